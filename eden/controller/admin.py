"""Admin HTTP+JSON API (bearer token). Endpoints are listed in docs/controller.md."""

from __future__ import annotations

import asyncio
import base64
import hmac
import math
import json
import logging
import os
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from eden.controller.admin_types import AnswerSetting, BulkResult, Changed, LastReport, LearnSetting, Settings, TofuSetting
from eden.controller.core import BadRequest, Controller, Forbidden, NotFound
from eden.controller.store import is_busy

log = logging.getLogger("eden.controller.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def admin_app(ctl: Controller, token: str) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")  # any bytes a client sends: never a 500
        if not hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {token}".encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except NotFound as exc:
            ctl.store.rollback()
            return web.json_response({"error": str(exc.args[0])}, status=404)
        except Forbidden as exc:
            return web.json_response({"error": str(exc)}, status=403)
        except (BadRequest, KeyError, TypeError, ValueError) as exc:
            ctl.store.rollback()
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        except Exception as exc:
            ctl.store.rollback()  # a failed commit put the memory state back (Controller.commit)
            if is_busy(exc):
                log.warning("database busy on admin %s %s: 503", request.method, request.path)
                return web.json_response({"error": "database busy (held by another process); retry"}, status=503,
                                         headers={"Retry-After": "1"})
            log.exception("admin error on %s %s", request.method, request.path)
            return web.json_response({"error": "internal error"}, status=500)

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except json.JSONDecodeError as exc:
            raise BadRequest(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        return data

    def ok(data: object, status: int = 200) -> web.Response:
        return web.json_response(data, status=status)

    async def devices(request: web.Request) -> web.Response:
        return ok([ctl.device_view(i, full=False) for i in range(len(ctl.model.devices))])

    async def preregister(request: web.Request) -> web.Response:
        d = await body(request)
        created, i = ctl.preregister(d.get("serial", ""), firmware=str(d.get("firmware", "")),
                                     images=d.get("images"), config=d.get("config"), learn=bool(d.get("learn", False)),
                                     tofu=bool(d.get("tofu", False)))
        return ok(ctl.device_view(i, full=True), 201 if created else 200)

    async def preregister_many(request: web.Request) -> web.Response:
        d = await body(request)
        created, updated = ctl.preregister_many(d.get("devices"))
        result: BulkResult = {"created": created, "updated": updated}
        return ok(result, 201 if created else 200)

    async def device(request: web.Request) -> web.Response:
        return ok(ctl.device_view(ctl.index(request.match_info["serial"]), full=True))

    def change(what: str, fields: tuple[str, ...] = ()) -> Handler:
        async def run(request: web.Request) -> web.Response:
            d = await body(request)
            for f in fields:
                if f not in d:
                    raise BadRequest(f"missing field {f!r}")
            if "name" in request.match_info:
                d = {"name": request.match_info["name"], "spec": None if request.method == "DELETE" else d}
            serial = request.match_info.get("serial")
            idx = ctl.admin_change(what, [serial] if serial else None, d)
            changed: Changed = {"changed": [ctl.device_view(i, full=False) for i in idx]}
            return ok(changed)
        return run

    async def revoke_cert(request: web.Request) -> web.Response:
        return ok(ctl.revoke_cert(request.match_info["serial"]))

    async def last_report(request: web.Request) -> web.Response:
        """The last report of one kind eden does not model (ZI_HARDWARE, flowlog, ...): base64."""
        serial, kind = request.match_info["serial"], request.match_info["kind"]
        ctl.index(serial)
        found = ctl.store.last_payload(serial, kind)
        if found is None:
            raise NotFound(f"no {kind} report from {serial!r}")
        report: LastReport = {"serial": serial, "kind": kind, "received": found[0],
                              "payload_b64": base64.b64encode(found[1]).decode()}
        return ok(report)

    async def info(request: web.Request) -> web.Response:
        """The last info of each object by kind (ZI_DEVICE, ZI_APP, ZI_VOLUME, ...); ?kind= one kind."""
        return ok(ctl.info_view(ctl.index(request.match_info["serial"]), request.query.get("kind")))

    async def set_learn(request: web.Request) -> web.Response:
        d = await body(request)
        ctl.set_learn(bool(d["learn"]))
        learn: LearnSetting = {"learn": ctl.learn}
        return ok(learn)

    async def set_tofu(request: web.Request) -> web.Response:
        d = await body(request)
        if not isinstance(d.get("tofu"), bool):
            raise BadRequest("tofu must be true or false")
        ctl.set_tofu(d["tofu"])
        tofu: TofuSetting = {"tofu": ctl.model.tofu}
        return ok(tofu)

    async def add_content(request: web.Request) -> web.Response:
        """JSON {name, path, version?, pcr13?} (a file on the controller's host), or the bytes as
        application/octet-stream with ?name=&version=&pcr13= (streamed to disk, never in memory)."""
        if request.content_type == "application/octet-stream":
            q = request.query
            d: dict[str, Any] = {"name": q.get("name", ""), "version": q.get("version", ""), "pcr13": q.get("pcr13")}
            ctl.check_content(d["name"], d["version"], d["pcr13"])
            ctl.content_dir.mkdir(parents=True, exist_ok=True)
            upload = ctl.content_dir / f".upload.{os.getpid()}.{time.monotonic_ns()}"
            try:
                with open(upload, "wb") as fh:
                    async for chunk in request.content.iter_chunked(1 << 20):
                        fh.write(chunk)
                sha, size, _ = await asyncio.to_thread(ctl.stage_content, upload)
            finally:
                upload.unlink(missing_ok=True)
        else:
            d = await body(request)
            ctl.check_content(d.get("name"), d.get("version") or "", d.get("pcr13"))
            if not isinstance(d.get("path"), str) or not d["path"]:
                raise BadRequest("content needs a path (or an application/octet-stream body)")
            src = ctl.content_source(d["path"])  # only inside a --content-from directory (403 else)
            sha, size, _ = await asyncio.to_thread(ctl.stage_content, src)
        version = d.get("version") or ""
        return ok(ctl.register_content(str(d.get("name") or ""), str(version), sha, size, d.get("pcr13")), 201)

    async def content(request: web.Request) -> web.Response:
        return ok(ctl.content_list())

    async def templates(request: web.Request) -> web.Response:
        status = request.query.get("status")
        return ok([t for t in ctl.store.templates() if status is None or t["status"] == status])

    async def approve(request: web.Request) -> web.Response:
        try:
            tid = int(request.match_info["tid"])
        except ValueError:
            raise BadRequest("template id must be an integer") from None
        return ok(ctl.approve(tid))

    async def stats(request: web.Request) -> web.Response:
        return ok(ctl.stats.summary())

    async def events(request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            raise BadRequest("since must be an integer and wait a number") from None
        if not math.isfinite(wait):
            raise BadRequest("wait must be a finite number of seconds")
        wait = min(wait, 60.0)
        found = await ctl.wait_events(since, wait)
        text = "".join(json.dumps(e, default=str) + "\n" for e in found)
        return web.Response(text=text, content_type="application/x-ndjson")

    async def settings(request: web.Request) -> web.Response:
        current: Settings = {"learn": ctl.learn, "tofu": ctl.model.tofu, "global_items": ctl.model.global_items,
                             "last_event_id": ctl.store.last_event_id(), "answer_mode": ctl.answer_mode}
        return ok(current)

    async def set_answer(request: web.Request) -> web.Response:
        d = await body(request)
        ctl.set_answer_mode(str(d.get("mode")))  # checked there: 400 for anything else
        answer: AnswerSetting = {"mode": ctl.answer_mode}
        return ok(answer)

    app = web.Application(middlewares=[guard])
    s = "/v1/devices/{serial}"
    app.add_routes([
        web.get("/v1/settings", settings),
        web.put("/v1/settings/learn", set_learn),
        web.put("/v1/settings/tofu", set_tofu),
        web.put("/v1/settings/answer", set_answer),
        web.post("/v1/content", add_content),
        web.get("/v1/content", content),
        web.get("/v1/devices", devices),
        web.post("/v1/devices", preregister),
        web.post("/v1/bulk/devices", preregister_many),
        web.get(s, device),
        web.put("/v1/items", change("items", ("items",))),
        web.put(f"{s}/items", change("items", ("items",))),
        web.put(f"{s}/baseos", change("baseos", ("image",))),
        web.post(f"{s}/baseos/retry", change("retry")),
        web.post(f"{s}/baseos/fallback", change("fallback")),
        web.post(f"{s}/reboot", change("reboot")),
        web.post(f"{s}/shutdown", change("shutdown")),
        web.put(f"{s}/apps/{{name}}", change("app")),
        web.delete(f"{s}/apps/{{name}}", change("app")),
        web.put(f"{s}/maintenance", change("maintenance", ("enable",))),
        web.put(f"{s}/learn", change("learn", ("learn",))),
        web.put(f"{s}/tofu", change("tofu", ("tofu",))),
        web.delete(f"{s}/tofu", change("tofu_reset")),
        web.post(f"{s}/attestation/revoke", change("revoke")),
        web.put(f"{s}/certs/refusal", change("refuse_certs", ("enable",))),
        web.delete(f"{s}/cert", revoke_cert),
        web.put(f"{s}/model", change("model")),
        web.get(f"{s}/reports/{{kind}}", last_report),
        web.get(f"{s}/info", info),
        web.get("/v1/templates", templates),
        web.post("/v1/templates/{tid}/approve", approve),
        web.get("/v1/stats", stats),
        web.get("/v1/events", events),
    ])
    return app
