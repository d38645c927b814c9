"""A small synchronous admin API client (stdlib urllib only)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Literal, Mapping, cast, overload

from eden.controller.admin_types import (AnswerSetting, BulkResult, Settings, Changed, ContentView, DeviceConfig, DeviceRow, AdminDeviceView, EndpointSummary,
                                         Event, InfoView, JsonValue, LastReport, LearnSetting, Preregistration, Template,
                                         TemplateStatus, TofuSetting)
from eden.controller.layout import Layout, ServeInfo
from eden.runtime.deadline import Deadline


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"admin API {status}: {message}")
        self.status = status


class AdminClient:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0, cafile: Path | None = None) -> None:
        """``cafile``: the controller's root certificate, for an admin API served over TLS."""
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ctx = ssl.create_default_context(cafile=str(cafile)) if cafile and url.startswith("https:") else None

    @classmethod
    def for_dir(cls, root: Path) -> "AdminClient":
        """From a running controller's DIR/serve.json and DIR/admin.token."""
        layout = Layout(root)
        info: ServeInfo = json.loads(layout.serve_json.read_text())
        return cls(info["admin_url"], layout.read_token(), cafile=layout.root_cert)

    @overload
    def request(self, method: str, path: str, body: object = None, *, timeout: float | None = None,
                raw: Literal[False] = False) -> JsonValue: ...
    @overload
    def request(self, method: str, path: str, body: object = None, *, timeout: float | None = None,
                raw: Literal[True]) -> str: ...

    def request(self, method: str, path: str, body: object = None, *, timeout: float | None = None,
                raw: bool = False) -> JsonValue | str:
        """``body``: anything ``json.dumps`` takes (None: no body). The answer parsed (None when it
        is empty), or with ``raw`` its text. The typed calls below say what each answer holds."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        text = self._open(req, timeout or self.timeout)
        if raw:
            return text
        parsed: JsonValue = json.loads(text) if text else None
        return parsed

    def _open(self, req: urllib.request.Request, timeout: float) -> str:
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise AdminError(exc.code, detail) from None

    def _dev(self, serial: str) -> str:
        return "/v1/devices/" + urllib.parse.quote(serial, safe="")

    # ------------------------------------------------------------------------- calls --
    def preregister(self, serial: str, *, firmware: str = "", images: dict[str, dict[str, str]] | None = None,
                    config: DeviceConfig | None = None, learn: bool = False, tofu: bool = False) -> AdminDeviceView:
        """``images``: name -> {version, measurement[, pcr13]}; ``tofu``: trust-on-first-use PCR
        templates for this device (see :mod:`eden.controller.model`)."""
        body: Preregistration = {"serial": serial, "firmware": firmware, "images": images or {}, "learn": learn, "tofu": tofu}
        if config is not None:
            body["config"] = config
        return cast(AdminDeviceView, self.request("POST", "/v1/devices", body))

    def preregister_many(self, devices: list[Preregistration]) -> BulkResult:
        """Pre-register many devices in one transaction: entries as for :meth:`preregister`."""
        return cast(BulkResult, self.request("POST", "/v1/bulk/devices", {"devices": devices}))

    def devices(self) -> list[DeviceRow]:
        return cast("list[DeviceRow]", self.request("GET", "/v1/devices"))

    def device(self, serial: str) -> AdminDeviceView:
        return cast(AdminDeviceView, self.request("GET", self._dev(serial)))

    def _change(self, method: str, path: str, body: Mapping[str, object] | None = None) -> Changed:
        """Every per-device change answers the changed devices' rows."""
        return cast(Changed, self.request(method, path, body))

    def set_items(self, items: Mapping[str, object], serial: str | None = None) -> Changed:
        path = self._dev(serial) + "/items" if serial else "/v1/items"
        return self._change("PUT", path, {"items": items})

    def set_baseos(self, serial: str, image: str, version: str, activate: bool = True) -> Changed:
        return self._change("PUT", self._dev(serial) + "/baseos", {"image": image, "version": version, "activate": activate})

    def retry_update(self, serial: str) -> Changed:
        return self._change("POST", self._dev(serial) + "/baseos/retry", {})

    def force_fallback(self, serial: str) -> Changed:
        """Raise the device's ``force.fallback.counter`` by one: it boots its other partition (spec §3)."""
        return self._change("POST", self._dev(serial) + "/baseos/fallback", {})

    def reboot(self, serial: str) -> Changed:
        return self._change("POST", self._dev(serial) + "/reboot", {})

    def shutdown(self, serial: str) -> Changed:
        return self._change("POST", self._dev(serial) + "/shutdown", {})

    def set_app(self, serial: str, name: str, spec: Mapping[str, object] | None) -> Changed:
        path = self._dev(serial) + "/apps/" + urllib.parse.quote(name, safe="")
        return self._change("DELETE", path) if spec is None else self._change("PUT", path, spec)

    def set_maintenance(self, serial: str, enable: bool) -> Changed:
        return self._change("PUT", self._dev(serial) + "/maintenance", {"enable": enable})

    def set_device_learn(self, serial: str, learn: bool) -> Changed:
        return self._change("PUT", self._dev(serial) + "/learn", {"learn": learn})

    def set_learn(self, learn: bool) -> LearnSetting:
        return cast(LearnSetting, self.request("PUT", "/v1/settings/learn", {"learn": learn}))

    def set_tofu(self, tofu: bool) -> TofuSetting:
        """Controller-wide trust-on-first-use PCR templates (spec §5)."""
        return cast(TofuSetting, self.request("PUT", "/v1/settings/tofu", {"tofu": tofu}))

    def set_device_tofu(self, serial: str, tofu: bool) -> Changed:
        return self._change("PUT", self._dev(serial) + "/tofu", {"tofu": tofu})

    def reset_device_tofu(self, serial: str) -> Changed:
        """Forget the device's learned firmware PCRs: its next quote is trusted on first use again."""
        return self._change("DELETE", self._dev(serial) + "/tofu")

    def add_content(self, name: str, path: str | Path, version: str | None = None, pcr13: str | None = None,
                    *, upload: bool = False) -> ContentView:
        """Register a base OS image file as content ``name`` (at ``version``): the controller stores
        it in its datastore and serves it to devices whose base OS is ``name``. ``pcr13``: the PCR 13
        value a device booted from this release quotes (hex). By default the controller reads
        ``path`` on its own host (hard link or copy); ``upload=True`` streams the bytes instead.
        Returns {name, version, sha256, size, pcr13, created, url}."""
        src = Path(path)
        if not upload:
            body = {"name": name, "path": str(src.resolve()), "version": version or ""}
            if pcr13 is not None:
                body["pcr13"] = pcr13
            return cast(ContentView, self.request("POST", "/v1/content", body, timeout=max(self.timeout, 600.0)))
        query = {"name": name, "version": version or ""}
        if pcr13 is not None:
            query["pcr13"] = pcr13
        with open(src, "rb") as fh:
            req = urllib.request.Request(self.url + "/v1/content?" + urllib.parse.urlencode(query), data=fh, method="POST")
            req.add_header("Authorization", f"Bearer {self.token}")
            req.add_header("Content-Type", "application/octet-stream")
            req.add_header("Content-Length", str(src.stat().st_size))
            return cast(ContentView, json.loads(self._open(req, max(self.timeout, 600.0))))

    def content(self) -> list[ContentView]:
        return cast("list[ContentView]", self.request("GET", "/v1/content"))

    def revoke_token(self, serial: str) -> Changed:
        return self._change("POST", self._dev(serial) + "/attestation/revoke", {})

    def refuse_certs(self, serial: str, enable: bool) -> Changed:
        """Refuse (or accept again) the device's ATTEST_REQ_CERT posts: 404, as the simulator's
        ``refuse_device_certs`` (spec §5, §7)."""
        return self._change("PUT", self._dev(serial) + "/certs/refusal", {"enable": enable})

    def settings(self) -> Settings:
        return cast(Settings, self.request("GET", "/v1/settings"))

    def set_answer_mode(self, mode: str) -> AnswerSetting:
        """The device API's answer switch: ``normal``, ``503`` or ``hang`` (:meth:`Controller.set_answer_mode`)."""
        return cast(AnswerSetting, self.request("PUT", "/v1/settings/answer", {"mode": mode}))

    def revoke_cert(self, serial: str) -> AdminDeviceView:
        """Delete the device's registration: its cert is refused from now on (a new one may register)."""
        return cast(AdminDeviceView, self.request("DELETE", self._dev(serial) + "/cert"))

    def set_model(self, serial: str, manufacturer: str, product_name: str) -> Changed:
        """What UuidResponse tells the device it is (EVE's hardware-model override; both or none)."""
        return self._change("PUT", self._dev(serial) + "/model", {"manufacturer": manufacturer, "product_name": product_name})

    def last_report(self, serial: str, kind: str) -> LastReport:
        """The last report of an unmodelled kind (``ZI_HARDWARE``, ``flowlog`` ...), payload in base64."""
        return cast(LastReport, self.request("GET", self._dev(serial) + f"/reports/{kind}"))

    def info(self, serial: str, kind: str | None = None) -> InfoView:
        """The last info of each object the device reported, by ZInfoTypes name (or ``kind`` only)."""
        query = "?" + urllib.parse.urlencode({"kind": kind}) if kind else ""
        return cast(InfoView, self.request("GET", self._dev(serial) + "/info" + query))

    def templates(self, status: TemplateStatus | None = None) -> list[Template]:
        return cast("list[Template]", self.request("GET", "/v1/templates" + (f"?status={status}" if status else "")))

    def approve(self, template_id: int) -> Template:
        return cast(Template, self.request("POST", f"/v1/templates/{template_id}/approve", {}))

    def stats(self) -> dict[str, EndpointSummary]:
        return cast("dict[str, EndpointSummary]", self.request("GET", "/v1/stats"))

    def wait_event(self, kind: str, serial: str | None = None, *, since: int = 0, timeout: float = 30.0,
                   parent: Deadline | None = None) -> Event:
        """The first event of ``kind`` (for ``serial``, if given) after ``since``; TimeoutError after
        ``timeout`` seconds or when ``parent`` ends."""
        deadline = Deadline(timeout, parent)
        while True:
            left = deadline.remaining()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} event for {serial!r} within {timeout} s")
            for event in self.events(since, wait=min(left, 30.0)):
                since = event["id"]
                if event["kind"] == kind and (serial is None or event["serial"] == serial):
                    return event

    def events(self, since: int = 0, wait: float = 0.0) -> list[Event]:
        text = self.request("GET", f"/v1/events?since={since}&wait={wait}", timeout=wait + self.timeout, raw=True)
        return [cast(Event, json.loads(line)) for line in text.splitlines() if line.strip()]
