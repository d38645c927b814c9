"""Controller state: the model, its SQLite mirror, device identities, events (spec §2, §5)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid as uuidlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from eden.controller.layout import Layout
from eden.controller.model import RealModel
from eden.controller.stats import Stats
from eden.controller.store import Store
from eden.wire import codec, pki, signing
from simulator.eve.measured_boot import QUOTE_PCRS, pcr_digest


class NotFound(KeyError):
    """Unknown device serial or template id (admin API 404)."""


class BadRequest(ValueError):
    """Admin input that does not make sense (admin API 400)."""


def parse_cert(value: Any) -> x509.Certificate:
    """A device certificate as ZRegisterMsg.pemCert carries it: PEM, or base64 of PEM (bytes or str)."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    if b"-----BEGIN" not in data:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("pemCert is neither PEM nor base64 PEM") from None
    return x509.load_pem_x509_certificate(data)


class Controller:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.settings = layout.read_config()
        self.store = Store(layout.db)
        self.signer = pki.load_pem(layout.cert("signing"), layout.key("signing"))
        self.root = pki.load_cert(layout.root_cert)
        self.onboard = pki.load_cert(layout.cert("onboard"))
        self.onboard_index = signing.cert_index([self.onboard])
        self.model = RealModel(self.store.get_meta("global_items", {}))
        self.learn = bool(self.store.get_meta("learn", self.settings.get("learn", False)))
        self.by_serial: dict[str, int] = {}
        # cert hash (16- and 32-byte forms) -> (device index, public key): the config hot path
        self.auth: dict[bytes, tuple[int, ec.EllipticCurvePublicKey]] = {}
        self.stats = Stats()
        self._new_event = asyncio.Event()
        self._load()

    def close(self) -> None:
        self.store.close()

    # --------------------------------------------------------------------------- load --
    def _load(self) -> None:
        for serial, _idx, state in self.store.devices():
            i = self.model.restore(state)
            self.by_serial[serial] = i
            if self.model.devices[i].cert:
                self._index_cert(i, parse_cert(self.model.devices[i].cert))
        for tpl in self.store.templates():
            if tpl["status"] == "approved" and tpl["serial"] in self.by_serial:
                self._approve_in_model(self.by_serial[tpl["serial"]], tpl["pcrs"])

    def _index_cert(self, i: int, cert: x509.Certificate) -> None:
        key = cert.public_key()
        for algo in (signing.SHA256_16BYTES, signing.SHA256_32BYTES):
            self.auth[signing.cert_hash(cert, algo)] = (i, key)  # type: ignore[assignment]

    def _approve_in_model(self, i: int, pcrs: dict[str, str]) -> None:
        self.model.learned.setdefault(i, []).append({int(k): bytes.fromhex(v) for k, v in pcrs.items()})

    # ---------------------------------------------------------------------- writing --
    def commit(self, indices: list[int], events: list[tuple[str, str | None, dict[str, Any]]]) -> None:
        """Persist the devices and events in one transaction, then wake event long-polls."""
        self.store.begin()
        try:
            for i in indices:
                self.store.put_device(self.model.devices[i].serial, i, self.model.dump(i))
            for kind, serial, data in events:
                self.store.add_event(kind, serial, data)
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        if events:
            self._new_event.set()
            self._new_event = asyncio.Event()

    async def wait_events(self, since: int, wait: float) -> list[dict[str, Any]]:
        waiter = self._new_event
        found = self.store.events_after(since)
        if found or wait <= 0:
            return found
        try:
            await asyncio.wait_for(waiter.wait(), timeout=wait)
        except asyncio.TimeoutError:
            return []
        return self.store.events_after(since)

    # ------------------------------------------------------------------------ admin --
    def index(self, serial: str) -> int:
        try:
            return self.by_serial[serial]
        except KeyError:
            raise NotFound(f"unknown device serial {serial!r}") from None

    def indices(self, serials: list[str] | None) -> list[int]:
        return list(range(len(self.model.devices))) if serials is None else [self.index(s) for s in serials]

    def preregister(self, serial: str, *, firmware: str = "", images: dict[str, dict[str, str]] | None = None,
                    config: dict[str, Any] | None = None, learn: bool = False) -> tuple[bool, int]:
        """(created, index). Re-registering an existing serial updates firmware/images/config."""
        created, i, event = self._preregister(serial, firmware=firmware, images=images, config=config, learn=learn)
        self.commit([i], [event])
        return created, i

    def preregister_many(self, entries: list[dict[str, Any]]) -> tuple[int, int]:
        """Pre-register many devices in one transaction (``eden emulate``): (created, updated).

        Each entry is ``{serial, firmware?, images?, config?, learn?}``, as for :meth:`preregister`.
        All entries are checked before any is applied, so bad input changes nothing."""
        if not isinstance(entries, list):
            raise BadRequest("devices must be a list")
        for n, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("serial"), str) or not e["serial"]:
                raise BadRequest(f"devices[{n}] needs a non-empty string serial")
            if not isinstance(e.get("images") or {}, dict):
                raise BadRequest(f"devices[{n}]: images must map name -> {{version, measurement}}")
            for name, img in (e.get("images") or {}).items():
                if not isinstance(img, dict) or "measurement" not in img:
                    raise BadRequest(f"devices[{n}]: image {name!r} needs a measurement")
            if e.get("config") is not None:
                self._check_config(e["config"])
        done = [self._preregister(e["serial"], firmware=str(e.get("firmware", "")), images=e.get("images"),
                                  config=e.get("config"), learn=bool(e.get("learn", False))) for e in entries]
        self.commit([i for _c, i, _e in done], [ev for _c, _i, ev in done])
        created = sum(1 for c, _i, _e in done if c)
        return created, len(done) - created

    def _preregister(self, serial: str, *, firmware: str, images: dict[str, dict[str, str]] | None,
                     config: dict[str, Any] | None, learn: bool) -> tuple[bool, int, tuple[str, str | None, dict[str, Any]]]:
        """Apply one pre-registration to the model; the caller commits (index and event returned)."""
        if not serial or not isinstance(serial, str):
            raise BadRequest("serial must be a non-empty string")
        images = images or {}
        if not isinstance(images, dict):
            raise BadRequest("images must map name -> {version, measurement}")
        for name, img in images.items():
            if not isinstance(img, dict) or "measurement" not in img:
                raise BadRequest(f"image {name!r} needs a measurement")
        measurements = {name: str(img["measurement"]) for name, img in images.items()}
        if config is not None:
            self._check_config(config)
        created = serial not in self.by_serial
        if created:
            i = self.model.add(serial, firmware, measurements)
            self.by_serial[serial] = i
            self.model.devices[i].uuid = str(uuidlib.uuid4())
        else:
            i = self.by_serial[serial]
            dev = self.model.devices[i]
            dev.firmware, dev.images = firmware or dev.firmware, measurements or dev.images
            self.model.forget_templates(i)
        side = self.model.side[i]
        side.images = {n: {"version": str(v.get("version", "")), "measurement": str(v["measurement"])} for n, v in images.items()} or side.images
        side.learn = bool(learn)
        if config is not None:
            self._apply_config(i, config)
        return created, i, ("preregistered" if created else "preregister_updated", serial,
                            {"firmware": firmware, "images": sorted(images), "config": config is not None})

    @staticmethod
    def validate(fragment: dict[str, Any]) -> None:
        """Reject admin input the wire cannot carry: trial-encode it as a config (codec rules)."""
        try:
            codec.encode_response("config", 200, {"config": {"hash": "", **fragment}, "ver": 0}, device_uuid="")
        except codec.CodecError as exc:
            raise BadRequest(str(exc)) from None

    def _check_config(self, config: Any) -> None:
        if not isinstance(config, dict):
            raise BadRequest("config must be an object")
        self.validate({"items": config.get("items") or {}, "apps": config.get("apps") or {},
                       "baseos": ({"retry": 0, **config["baseos"]} if config.get("baseos") else None)})

    def _apply_config(self, i: int, config: dict[str, Any]) -> None:
        m = self.model
        m.side[i].has_config = True
        if config.get("items"):
            m.set_items([i], dict(config["items"]), globally=False)
        if config.get("baseos"):
            b = config["baseos"]
            m.set_baseos([i], str(b["image"]), str(b.get("version", "")), bool(b.get("activate", True)))
        for name, spec in (config.get("apps") or {}).items():
            m.set_app([i], name, spec)
        if "maintenance" in config:
            m.set_maintenance([i], bool(config["maintenance"]))
        m._changed(i)

    def admin_change(self, what: str, serials: list[str] | None, data: dict[str, Any]) -> list[int]:
        """Apply one admin change to the devices (all devices when ``serials`` is None)."""
        m = self.model
        idx = self.indices(serials)
        if what == "items":
            if not isinstance(data.get("items"), dict):
                raise BadRequest("items must be an object")
            self.validate({"items": data["items"]})
        elif what == "baseos":
            self.validate({"baseos": {"image": data.get("image"), "version": str(data.get("version", "")), "retry": 0}})
        elif what == "app" and data.get("spec") is not None:
            self.validate({"apps": {data["name"]: data["spec"]}})
        if what == "items" and serials is None:
            m.set_items(idx, dict(data["items"]), globally=True)
            self.store.begin()
            self.store.put_meta("global_items", m.global_items)
        elif what == "items":
            m.set_items(idx, dict(data["items"]), globally=False)
        elif what == "baseos":
            m.set_baseos(idx, str(data["image"]), str(data.get("version", "")), bool(data.get("activate", True)))
        elif what == "retry":
            m.bump_retry(idx)
        elif what == "reboot":
            m.bump_reboot(idx)
        elif what == "shutdown":
            m.bump_shutdown(idx)
        elif what == "app":
            m.set_app(idx, str(data["name"]), data.get("spec"))
        elif what == "maintenance":
            m.set_maintenance(idx, bool(data["enable"]))
        elif what == "revoke":
            m.revoke_token(idx)
        elif what == "learn":
            for i in idx:
                m.side[i].learn = bool(data["learn"])
        else:
            raise BadRequest(f"unknown change {what!r}")
        if what not in ("revoke", "learn"):
            for i in idx:
                m.side[i].has_config = True
        self.commit(idx, [("admin_" + what, m.devices[i].serial, data) for i in idx] if serials is not None
                    else [("admin_" + what, None, data)])
        return idx

    def set_learn(self, learn: bool) -> None:
        self.learn = learn
        self.store.begin()
        self.store.put_meta("learn", learn)
        self.commit([], [("admin_learn", None, {"learn": learn})])

    def approve(self, tid: int) -> dict[str, Any]:
        tpl = next((t for t in self.store.templates() if t["id"] == tid), None)
        if tpl is None:
            raise NotFound(f"unknown template {tid}")
        if tpl["status"] != "approved":
            self.store.begin()
            self.store.set_template_status(tid, "approved")
            if tpl["serial"] in self.by_serial:
                self._approve_in_model(self.by_serial[tpl["serial"]], tpl["pcrs"])
            self.commit([], [("template_approved", tpl["serial"], {"id": tid, "digest": tpl["digest"]})])
            tpl["status"] = "approved"
        return tpl

    def config_exists(self, i: int) -> bool:
        """Rule: a device has a config once it was pre-registered with one, any admin config change
        touched it, or global configItems are set."""
        return self.model.side[i].has_config or bool(self.model.global_items)

    def device_view(self, i: int, *, full: bool) -> dict[str, Any]:
        dev = self.model.devices[i]
        side = self.model.side[i]
        view: dict[str, Any] = {
            "serial": dev.serial, "uuid": dev.uuid, "onboarded": side.onboarded,
            "registered": dev.cert is not None, "last_seen": side.last_seen or None,
            "config_hash": dev.hash or None, "config_version": dev.ver, "served_hash": side.served_hash or None,
            "has_config": self.config_exists(i),
        }
        if full:
            view.update({
                "firmware": dev.firmware, "images": side.images, "learn": side.learn,
                "items": dev.items, "baseos": dev.baseos, "reboot": dev.reboot, "shutdown": side.shutdown,
                "apps": dev.apps, "maintenance": dev.maintenance,
                "attestation": {"token_required": dev.token_required, "has_token": dev.token is not None,
                                "escrowed": dev.escrow is not None, "failures": dev.attest_failures,
                                "results": side.attestations},
                "info": dev.info, "info_count": side.info_count,
                "metrics": side.metrics, "metrics_count": side.metrics_count,
                "logs_count": side.logs_count,
            })
        return view

    # -------------------------------------------------------------- attestation --
    def learn_quote(self, i: int, pcrs: dict[int, bytes]) -> None:
        """Before the model judges a quote: store an unknown PCR set as a pending template, or
        auto-approve it when learning is on and the device has no learned template yet (§5)."""
        digest = pcr_digest(pcrs, QUOTE_PCRS)
        if any(pcr_digest(t, QUOTE_PCRS) == digest for t in self.model.templates_for(i)):
            return
        dev = self.model.devices[i]
        learn = (self.learn or self.model.side[i].learn) and not self.model.learned.get(i)
        status = "approved" if learn else "pending"
        hexed = {str(k): v.hex() for k, v in sorted(pcrs.items()) if k in QUOTE_PCRS}
        self.store.begin()
        tid = self.store.add_template(dev.serial, digest.hex(), hexed, status)
        if learn:
            self.store.set_template_status(tid, "approved")
            self._approve_in_model(i, hexed)
        self.commit([], [("template_" + ("learned" if learn else "pending"), dev.serial, {"id": tid, "digest": digest.hex()})])

    def now(self) -> float:
        return time.time()
