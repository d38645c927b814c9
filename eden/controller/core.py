"""Controller state: the model, its SQLite mirror, device identities, events (spec §2, §5)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import sqlite3
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any, Literal, Mapping, cast, overload

from typing_extensions import Unpack

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from eden.controller.admin_types import (ANSWER_MODES, AnswerMode, ContentRow, ContentView, DeviceConfig, DeviceRow, AdminDeviceView, Event,
                                         EventSpec, InfoView, JsonValue, ObjectEntry, ReportExtra, ReportSummary,
                                         Template)
from eden.controller.layout import Layout
from eden.controller.limits import Limits
from eden.controller.model import DATASTORE_PATH, RealModel
from eden.controller.quota import Quotas
from eden.controller.setup import ensure_ecdh
from eden.controller.stats import Stats
from eden.controller.store import Store, TemplateStatus
from eden.wire import codec, pki, signing
from eve.measured_boot import PCR_ROOTFS, QUOTE_PCRS, pcr_digest


log = logging.getLogger("eden.controller")
CLOCK_SKEW = 300.0  # s a device clock may run ahead of the controller's (notBefore in the future)


class NotFound(KeyError):
    """Unknown device serial or template id (admin API 404)."""


class BadRequest(ValueError):
    """Admin input that does not make sense (admin API 400)."""


class Forbidden(Exception):
    """An admin request the controller's options do not allow (admin API 403)."""


def check_pcr13(value: object) -> str | None:
    """A declared PCR 13 value: None, or 64 hex digits (returned lower-case)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"pcr13 must be a hex string, got {value!r}")
    text = value.strip().lower()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise BadRequest(f"pcr13 must be a SHA-256 value (64 hex digits), got {value!r}")
    return text


def _is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and all(ch in "0123456789abcdef" for ch in text)


def parse_cert(value: str | bytes) -> x509.Certificate:
    """A device certificate as ZRegisterMsg.pemCert carries it: PEM, or base64 of PEM (bytes or str)."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    if b"-----BEGIN" not in data:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("pemCert is neither PEM nor base64 PEM") from None
    return x509.load_pem_x509_certificate(data)


class Controller:
    def __init__(self, layout: Layout, *, limits: Limits | None = None, accept_expired_certs: bool = False,
                 content_from: list[Path] | None = None) -> None:
        """``accept_expired_certs``: a lab switch (docs/security.md); ``content_from``: the directories
        whose files the admin API may register as content by path (none by default)."""
        self.layout = layout
        self.settings = layout.read_config()
        self.limits = limits or Limits()
        self.accept_expired_certs = accept_expired_certs
        self.content_from = [Path(d).resolve() for d in (content_from or [])]
        self.store = Store(layout.db, busy_ms=self.limits.db_busy_ms)
        self.signer = pki.load_pem(layout.cert("signing"), layout.key("signing"))
        self.ecdh = ensure_ecdh(layout)
        self.root = pki.load_cert(layout.root_cert)
        self.onboard = pki.load_cert(layout.cert("onboard"))
        self.onboard_index = signing.cert_index([self.onboard])
        # the controller's own certificates: none of them is ever a device identity
        own = [self.onboard, self.root, self.signer.cert, self.ecdh.cert, pki.load_cert(layout.cert("tls"))]
        self.own_certs = {signing.cert_hash(c) for c in own}
        self.content_dir = layout.content_dir
        self.stats = Stats()
        self.quotas = Quotas(self.limits)
        self._log_bytes: dict[str, int] = {}  # stored log bytes per serial (read once, then counted)
        self._info_since_trim: dict[str, int] = {}  # info events added per serial since its last trim
        self._new_event = asyncio.Event()
        self.answer_mode: AnswerMode = "normal"
        """The answer switch (``eden controller answer``): how the device API answers, for fault
        scenarios; in memory only, so a restarted controller answers normally."""
        self._mode_changed = asyncio.Event()
        self._fresh()
        self._load()

    def _retain_info(self, serial: str) -> None:
        """Retention of "info" events (one per info post): every ``info_events_kept`` posts of a
        device, its older ones beyond the newest ``info_events_kept`` are deleted."""
        n = self._info_since_trim.get(serial, 0) + 1
        keep = self.limits.info_events_kept
        if n >= keep:
            self.store.trim_events("info", serial, keep)
            n = 0
        self._info_since_trim[serial] = n

    def store_log(self, serial: str, path: str, data: bytes) -> None:
        """Add one log upload inside the open transaction; keep the device's stored logs within
        ``log_retention_bytes``, oldest dropped first (docs/security.md)."""
        self.store.add_log(serial, path, data)
        held = self._log_bytes.get(serial)
        held = (self.store.log_bytes(serial) if held is None else held + len(data))
        over = held - self.limits.log_retention_bytes
        if over > 0:
            held -= self.store.trim_logs(serial, over)
        self._log_bytes[serial] = held

    def _global_items(self) -> dict[str, JsonValue]:
        """The controller-wide config items (an object: only :meth:`admin_change` writes them)."""
        items = self.store.get_meta("global_items", {})
        if not isinstance(items, dict):
            raise ValueError(f"global_items in the database is not an object: {items!r}")
        return items

    def _fresh(self) -> None:
        self.model = RealModel(self._global_items())
        self.learn = bool(self.store.get_meta("learn", self.settings.get("learn", False)))
        self.model.tofu = bool(self.store.get_meta("tofu", self.settings.get("tofu", False)))
        self.by_serial: dict[str, int] = {}
        # cert hash (16- and 32-byte forms) -> (device index, public key): the config hot path
        self.auth: dict[bytes, tuple[int, ec.EllipticCurvePublicKey]] = {}
        # hashes (16- and 32-byte) of revoked device certs: refused even with a valid signature
        self.revoked: dict[bytes, int] = {}

    def _restore(self, indices: list[int]) -> None:
        """After a failed commit: put the devices it carried, and the controller-wide state, back to
        what the database holds, so nothing unacknowledged is served or answered as done. Cost:
        those devices plus the small global tables, not the fleet (the event loop must not stall)."""
        try:
            self.store.rollback()
        except sqlite3.Error:  # the connection is already out of its transaction
            self.store.forget_tx()
        self._log_bytes.clear()
        m = self.model
        for i in sorted(set(indices), reverse=True):
            dev = m.devices[i]
            if dev.cert:  # forget the identity it may have just taken
                for algo in (signing.SHA256_16BYTES, signing.SHA256_32BYTES):
                    digest = signing.cert_hash(parse_cert(dev.cert), algo)
                    if self.auth.get(digest, (None,))[0] == i:
                        del self.auth[digest]
            state = self.store.device(dev.serial)
            if state is None:  # created by the failed transaction: always the last ones added
                if i != len(m.devices) - 1:
                    self._fresh()
                    self._load()
                    return
                m.devices.pop()
                m.side.pop()
                del self.by_serial[dev.serial]
                continue
            m.restore(state, at=i)
            for der_hash in m.side[i].revoked:
                self._index_revoked(i, bytes.fromhex(der_hash))
            if cert := m.devices[i].cert:
                self._index_cert(i, parse_cert(cert))
        m.global_items = self._global_items()
        self.learn = bool(self.store.get_meta("learn", self.settings.get("learn", False)))
        m.tofu = bool(self.store.get_meta("tofu", self.settings.get("tofu", False)))
        m.learned, m.content = {}, {}
        m.firmware = {}
        self._load_tables()
        for i in range(len(m.devices)):  # global items or content may have changed every config
            m.devices[i].config = None

    def register_identity(self, i: int, cert: x509.Certificate) -> tuple[int, str] | None:
        """Identity rules for ``register`` (spec §2: 201 new / 200 repeat / 409 conflict): an
        error (status, reason), or None when device ``i`` may take ``cert``. A certificate belongs to
        one serial; the controller's own certificates (onboarding included) are never a device's."""
        digest = signing.cert_hash(cert)
        if digest in self.own_certs:
            return 409, "the controller's own (onboarding) certificate is never a device certificate"
        owner = self.auth.get(digest)
        if owner is not None and owner[0] != i:
            return 409, "this device certificate is registered under another serial"
        if not self.accept_expired_certs:
            now = time.time()
            if cert.not_valid_before_utc.timestamp() > now + CLOCK_SKEW:
                return 401, "the device certificate is not valid yet"
            if cert.not_valid_after_utc.timestamp() < now:
                return 401, "the device certificate has expired"
        return None

    def close(self) -> None:
        self.store.close()

    # --------------------------------------------------------------------------- load --
    def _load(self) -> None:
        for serial, _idx, state in self.store.devices():
            i = self.model.restore(state)
            self.by_serial[serial] = i
            for der_hash in self.model.side[i].revoked:
                self._index_revoked(i, bytes.fromhex(der_hash))
            if pem := self.model.devices[i].cert:
                cert = parse_cert(pem)
                if signing.cert_hash(cert) in self.own_certs:  # stored by an older eden: not an identity
                    log.warning("device %s was registered with the controller's own certificate: dropped", serial)
                    self.model.devices[i].cert = None
                    continue
                self._index_cert(i, cert)
        self._load_tables()

    def _load_tables(self) -> None:
        """Templates, content and TOFU PCRs into the model (the devices are loaded)."""
        for tpl in self.store.templates():
            if tpl["status"] == "approved" and tpl["serial"] in self.by_serial:
                self._approve_in_model(self.by_serial[tpl["serial"]], tpl["pcrs"])
        for row in self.store.content():
            self.model.content.setdefault(row["name"], {})[row["version"]] = row
        for serial, pcrs in self.store.firmware_pcrs().items():
            if serial in self.by_serial:
                self.model.firmware[self.by_serial[serial]] = {int(k): bytes.fromhex(v) for k, v in pcrs.items()}

    def _index_cert(self, i: int, cert: x509.Certificate) -> None:
        key = cert.public_key()
        for algo in (signing.SHA256_16BYTES, signing.SHA256_32BYTES):
            self.auth[signing.cert_hash(cert, algo)] = (i, key)  # type: ignore[assignment]

    def _index_revoked(self, i: int, der_sha256: bytes) -> None:
        self.revoked[der_sha256] = i
        self.revoked[der_sha256[:16]] = i

    def revoke_cert(self, serial: str) -> AdminDeviceView:
        """Delete a device's registration: its cert no longer authenticates anything, even with a
        valid signature, and may not register again; a new device cert may register (201) and
        keeps the device's uuid. (The API has no replay defence, docs/real-eve.md.)"""
        i = self.index(serial)
        dev, side = self.model.devices[i], self.model.side[i]
        if dev.cert is None:
            raise BadRequest(f"device {serial!r} has no registered certificate")
        cert = parse_cert(dev.cert)
        for algo in (signing.SHA256_16BYTES, signing.SHA256_32BYTES):
            self.auth.pop(signing.cert_hash(cert, algo), None)
        der_sha256 = signing.cert_hash(cert, signing.SHA256_32BYTES)
        side.revoked = [*side.revoked, der_sha256.hex()]
        self._index_revoked(i, der_sha256)
        dev.cert = None
        side.onboarded = False
        self.commit([i], [("cert_revoked", serial, {"cert_sha256": der_sha256.hex()})])
        return self.device_view(i, full=True)

    def record_report(self, i: int, kind: str, payload: bytes, *, keep: bool, **extra: Unpack[ReportExtra]) -> None:
        """Count a device report by kind and keep its summary (and, with ``keep``, its bytes: the
        kinds eden does not model). The caller commits."""
        side = self.model.side[i]
        last = side.reports.get(kind)
        summary: ReportSummary = {"count": (int(last["count"]) if last else 0) + 1, "received": time.time(),
                                  "size": len(payload), **extra}
        side.reports = {**side.reports, kind: summary}
        if keep:
            self.store.begin()
            self.store.put_last_payload(self.model.devices[i].serial, kind, payload)

    def keep_object(self, i: int, kind: str, key: str, data: Mapping[str, object] | None, at: float) -> None:
        """The last info of one object (a volume, a content tree, ...); ``data`` None: it is gone.
        At most ``info_objects_per_kind`` per kind: a new object drops the least recently
        updated one, so a device cannot grow the controller's state without bound. The caller commits."""
        side = self.model.side[i]
        objs = dict(side.objects.get(kind, {}))
        objs.pop(key, None)
        if data is not None:
            while len(objs) >= self.limits.info_objects_per_kind:
                objs.pop(next(iter(objs)))
                side.objects_dropped += 1
            entry: ObjectEntry = {"at": at, "received": time.time(), "data": data}
            objs[key] = entry
        side.objects = {**side.objects, kind: objs}

    def info_view(self, i: int, kind: str | None = None) -> InfoView:
        """The last info of every object the device reported, by ZInfoTypes name (or one kind)."""
        if kind is not None and (kind not in codec.INFO_KINDS):
            raise BadRequest(f"kind must be one of {', '.join(codec.INFO_KINDS)}, got {kind!r}")
        dev, side = self.model.devices[i], self.model.side[i]
        kinds: dict[str, Mapping[str, object]] = {}
        if dev.info is not None:
            kinds["ZI_DEVICE"] = {"device": {k: v for k, v in dev.info.items() if k != "apps"}}
            kinds["ZI_APP"] = dict(dev.info.get("apps") or {})
        kinds.update(side.objects)
        if kind is not None:
            kinds = {kind: kinds.get(kind, {})}
        return {"serial": dev.serial, "kinds": kinds, "dropped": side.objects_dropped}

    def _approve_in_model(self, i: int, pcrs: dict[str, str]) -> None:
        self.model.learned.setdefault(i, []).append({int(k): bytes.fromhex(v) for k, v in pcrs.items()})

    # ---------------------------------------------------------------------- writing --
    def commit(self, indices: list[int], events: list[EventSpec]) -> None:
        """Persist the devices and events in one transaction, then wake event long-polls. If it
        fails (a lock held by another process: 503), the memory state is put back (:meth:`_restore`)."""
        try:
            self.store.begin()
            for i in indices:
                self.store.put_device(self.model.devices[i].serial, i, self.model.dump(i))
            for kind, serial, data in events:
                self.store.add_event(kind, serial, data)
                if kind == "info" and serial is not None:
                    self._retain_info(serial)
            self.store.commit()
        except BaseException:
            self._restore(indices)
            raise
        if events:
            self._new_event.set()
            self._new_event = asyncio.Event()

    def set_answer_mode(self, mode: str) -> None:
        """``normal``; ``503``: every device-API request is answered 503 at once (an overloaded
        controller, the simulator's ``controller_503``); ``hang``: every one is held unanswered
        until the switch changes or ``hang_hold`` runs out (then 503), as the simulator's
        ``controller_hang``. The datastore is not affected."""
        if mode not in ANSWER_MODES:
            raise BadRequest(f"answer mode must be one of {', '.join(ANSWER_MODES)}; got {mode!r}")
        if mode == self.answer_mode:
            return
        self.store.begin()  # the write lock first: a busy database changes nothing (503)
        was, self.answer_mode = self.answer_mode, cast(AnswerMode, mode)
        try:
            self.commit([], [("admin_answer_mode", None, {"mode": mode})])
        except BaseException:
            self.answer_mode = was
            raise
        self._mode_changed.set()
        self._mode_changed = asyncio.Event()

    async def hold_while_hung(self) -> bool:
        """Wait while the switch says ``hang``; True when the hold ran out (answer 503)."""
        deadline = time.monotonic() + self.limits.hang_hold
        while self.answer_mode == "hang":
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                await asyncio.wait_for(self._mode_changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                return True
        return False

    async def wait_events(self, since: int, wait: float) -> list[Event]:
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
                    config: DeviceConfig | None = None, learn: bool = False, tofu: bool = False) -> tuple[bool, int]:
        """(created, index). Re-registering an existing serial updates firmware/images/config.

        ``images`` maps name -> {version, measurement[, pcr13]}: ``pcr13`` (hex) is the release's
        PCR 13 for trust-on-first-use templates (``tofu``, see :mod:`eden.controller.model`)."""
        created, i, event = self._preregister(serial, firmware=firmware, images=images, config=config, learn=learn, tofu=tofu)
        self.commit([i], [event])
        return created, i

    def preregister_many(self, entries: object) -> tuple[int, int]:
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
                check_pcr13(img.get("pcr13"))
            if e.get("config") is not None:
                self._check_config(e["config"])
        done = [self._preregister(e["serial"], firmware=str(e.get("firmware", "")), images=e.get("images"),
                                  config=e.get("config"), learn=bool(e.get("learn", False)),
                                  tofu=bool(e.get("tofu", False))) for e in entries]
        self.commit([i for _c, i, _e in done], [ev for _c, _i, ev in done])
        created = sum(1 for c, _i, _e in done if c)
        return created, len(done) - created

    def _preregister(self, serial: str, *, firmware: str, images: dict[str, dict[str, str]] | None,
                     config: DeviceConfig | None, learn: bool, tofu: bool = False) -> tuple[bool, int, EventSpec]:
        """Apply one pre-registration to the model; the caller commits (index and event returned)."""
        if not serial or not isinstance(serial, str):
            raise BadRequest("serial must be a non-empty string")
        images = images or {}
        if not isinstance(images, dict):
            raise BadRequest("images must map name -> {version, measurement}")
        for name, img in images.items():
            if not isinstance(img, dict) or "measurement" not in img:
                raise BadRequest(f"image {name!r} needs a measurement")
            check_pcr13(img.get("pcr13"))
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
        declared = {}
        for n, v in images.items():
            declared[n] = {"version": str(v.get("version", "")), "measurement": str(v["measurement"])}
            pcr13 = check_pcr13(v.get("pcr13"))
            if pcr13:
                declared[n]["pcr13"] = pcr13
        side.images = declared or side.images
        side.learn = bool(learn)
        side.tofu = bool(tofu)
        if config is not None:
            self._apply_config(i, config)
        return created, i, ("preregistered" if created else "preregister_updated", serial,
                            {"firmware": firmware, "images": sorted(images), "config": config is not None})

    @staticmethod
    def validate(fragment: Mapping[str, object]) -> None:
        """Reject admin input the wire cannot carry: trial-encode it as a config (codec rules)."""
        try:
            codec.encode_response("config", 200, {"config": {"hash": "", **fragment}, "ver": 0}, device_uuid="")
        except codec.CodecError as exc:
            raise BadRequest(str(exc)) from None

    def _check_config(self, config: object) -> None:
        if not isinstance(config, dict):
            raise BadRequest("config must be an object")
        self.validate({"items": config.get("items") or {}, "apps": config.get("apps") or {},
                       "baseos": ({"retry": 0, **config["baseos"]} if config.get("baseos") else None)})

    def _apply_config(self, i: int, config: DeviceConfig) -> None:
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
        self.store.begin()  # the write lock first: a busy database changes nothing (503)
        if what == "items" and serials is None:
            m.set_items(idx, dict(data["items"]), globally=True)
            self.store.put_meta("global_items", m.global_items)
        elif what == "items":
            m.set_items(idx, dict(data["items"]), globally=False)
        elif what == "baseos":
            m.set_baseos(idx, str(data["image"]), str(data.get("version", "")), bool(data.get("activate", True)))
        elif what == "retry":
            m.retry_update(idx)
        elif what == "fallback":
            m.force_fallback(idx)
        elif what == "reboot":
            m.reboot(idx)
        elif what == "shutdown":
            m.shutdown(idx)
        elif what == "app":
            m.set_app(idx, str(data["name"]), data.get("spec"))
        elif what == "maintenance":
            m.set_maintenance(idx, bool(data["enable"]))
        elif what == "revoke":
            m.revoke_token(idx)
        elif what == "refuse_certs":
            if not isinstance(data.get("enable"), bool):
                raise BadRequest("enable must be true or false")
            m.refuse_certs(idx, data["enable"])
        elif what == "learn":
            for i in idx:
                m.side[i].learn = bool(data["learn"])
        elif what == "tofu":
            for i in idx:
                m.side[i].tofu = bool(data["tofu"])
        elif what == "model":
            for key in ("manufacturer", "product_name"):
                if not isinstance(data.get(key, ""), str) or len(data.get(key, "")) > 256:
                    raise BadRequest(f"{key} must be a string of at most 256 characters")
            for i in idx:
                m.side[i].manufacturer = data.get("manufacturer", "")
                m.side[i].product_name = data.get("product_name", "")
        elif what == "tofu_reset":
            for i in idx:
                m.firmware.pop(i, None)
                self.store.forget_firmware_pcrs(m.devices[i].serial)
        else:
            raise BadRequest(f"unknown change {what!r}")
        if what not in ("revoke", "learn", "tofu", "tofu_reset", "model", "refuse_certs"):
            for i in idx:
                m.side[i].has_config = True
        self.commit(idx, [("admin_" + what, m.devices[i].serial, data) for i in idx] if serials is not None
                    else [("admin_" + what, None, data)])
        return idx

    def set_learn(self, learn: bool) -> None:
        self.store.begin()
        self.learn = learn
        self.store.put_meta("learn", learn)
        self.commit([], [("admin_learn", None, {"learn": learn})])

    def set_tofu(self, tofu: bool) -> None:
        """Controller-wide trust-on-first-use PCR templates (spec §5); see :mod:`eden.controller.model`."""
        self.store.begin()
        self.model.tofu = tofu
        self.store.put_meta("tofu", tofu)
        self.commit([], [("admin_tofu", None, {"tofu": tofu})])

    # ---------------------------------------------------------------------- content --
    def content_source(self, path: str) -> Path:
        """A file the admin API may add as content by path: a regular file inside one of the
        ``--content-from`` directories after every symlink is resolved. Anything else is refused,
        so the datastore (served to anyone who can reach the device API) holds only content an
        operator put there on purpose."""
        if not self.content_from:
            raise Forbidden("adding content by path is off (start the controller with --content-from DIR, "
                            "or upload the bytes as application/octet-stream)")
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(d) for d in self.content_from):
            raise Forbidden(f"{path} is not inside a --content-from directory")
        if not real.is_file():
            raise BadRequest(f"{path} is not a regular file")
        return real

    def stage_content(self, src: Path) -> tuple[str, int, Path]:
        """Put a file into the datastore directory (a hard link when possible, else a copy through a
        temp file), hashing it on the way: (sha256 hex, size, stored path). Blocking: run it in a
        thread; it touches no controller state."""
        if not src.is_file():
            raise BadRequest(f"{src} is not a readable file")
        self.content_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.content_dir / f".incoming.{os.getpid()}.{time.monotonic_ns()}"
        digest = hashlib.sha256()
        size = 0
        try:
            try:
                os.link(src, tmp)
                out = None
            except OSError:
                out = open(tmp, "wb")
            try:
                with open(src, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                        if out is not None:
                            out.write(chunk)
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                if out is not None:
                    out.close()
            sha = digest.hexdigest()
            final = self.content_dir / sha
            os.replace(tmp, final)
            return sha, size, final
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def check_content(name: object, version: object, pcr13: object) -> str | None:
        """Validate content arguments before anything is staged; returns the normalised pcr13."""
        if not name or not isinstance(name, str):
            raise BadRequest("content needs a non-empty string name")
        if not isinstance(version, str):
            raise BadRequest("content version must be a string")
        try:
            codec.image_uuid(name)
        except ValueError as exc:
            raise BadRequest(f"bad content name: {exc}") from None
        return check_pcr13(pcr13)

    def register_content(self, name: str, version: str, sha256: str, size: int, pcr13: str | None) -> ContentView:
        """Record staged content under (name, version); devices whose base OS is ``name`` get a new
        config carrying it (spec §3 step 1)."""
        pcr13 = self.check_content(name, version, pcr13)
        if not _is_sha256_hex(sha256) or not (self.content_dir / sha256).is_file():
            raise BadRequest(f"no staged content {sha256!r}")
        row: ContentRow = {"name": name, "version": version, "sha256": sha256, "size": int(size), "pcr13": pcr13, "created": time.time()}
        m = self.model
        self.store.begin()
        m.content.setdefault(name, {})[version] = row
        changed = [i for i, dev in enumerate(m.devices) if dev.baseos and dev.baseos["image"] == name]
        for i in changed:
            m._changed(i)
        self.store.put_content(name, version, sha256, int(size), pcr13)
        self.commit(changed, [("content_added", None, {"name": name, "version": version, "sha256": sha256,
                                                       "size": int(size), "pcr13": pcr13})])
        return self.content_view(row)

    def add_content(self, name: str, src: Path, *, version: str = "", pcr13: str | None = None) -> ContentView:
        """Stage and register in one call (offline use and tests; the server stages in a thread)."""
        self.check_content(name, version, pcr13)
        sha, size, _path = self.stage_content(Path(src))
        return self.register_content(name, version, sha, size, pcr13)

    @staticmethod
    def content_view(row: ContentRow) -> ContentView:
        return {**row, "url": DATASTORE_PATH + row["sha256"]}

    def content_list(self) -> list[ContentView]:
        return [self.content_view(r) for versions in self.model.content.values() for r in versions.values()]

    def content_file(self, sha256: str) -> Path | None:
        """The datastore file for ``sha256`` when it is registered content, else None."""
        sha = sha256.lower()
        if not _is_sha256_hex(sha):
            return None
        if not any(r["sha256"] == sha for versions in self.model.content.values() for r in versions.values()):
            return None
        path = self.content_dir / sha
        return path if path.is_file() else None

    def approve(self, tid: int) -> Template:
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

    @overload
    def device_view(self, i: int, *, full: Literal[False]) -> DeviceRow: ...
    @overload
    def device_view(self, i: int, *, full: Literal[True]) -> AdminDeviceView: ...
    @overload
    def device_view(self, i: int, *, full: bool) -> DeviceRow | AdminDeviceView: ...

    def device_view(self, i: int, *, full: bool) -> DeviceRow | AdminDeviceView:
        dev = self.model.devices[i]
        side = self.model.side[i]
        row: DeviceRow = {
            "serial": dev.serial, "uuid": dev.uuid, "onboarded": side.onboarded,
            "registered": dev.cert is not None, "last_seen": side.last_seen or None,
            "config_hash": dev.hash or None, "config_version": dev.ver, "served_hash": side.served_hash or None,
            "has_config": self.config_exists(i),
        }
        if not full:
            return row
        view: AdminDeviceView = {
            **row,
            "firmware": dev.firmware, "images": side.images, "learn": side.learn,
            "tofu": self.model.uses_tofu(i), "firmware_pcrs_learned": i in self.model.firmware,
            "items": dev.items, "baseos": dev.baseos, "reboot": dev.reboot, "shutdown": dev.shutdown,
            "apps": dev.apps, "maintenance": dev.maintenance,
            "attestation": {"token_required": dev.token_required, "has_token": dev.token is not None,
                            "escrowed": dev.escrow is not None, "failures": dev.attest_failures,
                            "last": side.attestations[-1] if side.attestations else None,
                            "results": side.attestations},
            "certs": {"posted": side.certs_posted, "at": side.certs_at or None,
                      "types": sorted(side.certs), "pem": side.certs, "refused": dev.refuse_certs},
            "info": dev.info, "info_count": side.info_count,
            "metrics": side.metrics, "metrics_count": side.metrics_count,
            "logs_count": side.logs_count,
            "reports": side.reports, "revoked_certs": side.revoked,
            "manufacturer": side.manufacturer, "product_name": side.product_name,
        }
        return view

    # -------------------------------------------------------------- attestation --
    def learn_quote(self, i: int, pcrs: dict[int, bytes]) -> None:
        """Before the model judges a quote: store an unknown PCR set as a pending template, or
        auto-approve it when learning is on and the device has no learned template yet (§5).
        A device in trust-on-first-use mode instead learns its firmware PCRs once (:meth:`_tofu`)."""
        if self.model.uses_tofu(i):
            self._tofu(i, pcrs)
            return
        digest = pcr_digest(pcrs, QUOTE_PCRS)
        if any(pcr_digest(t, QUOTE_PCRS) == digest for t in self.model.templates_for(i)):
            return
        dev = self.model.devices[i]
        learn = (self.learn or self.model.side[i].learn) and not self.model.learned.get(i)
        status: TemplateStatus = "approved" if learn else "pending"
        hexed = {str(k): v.hex() for k, v in sorted(pcrs.items()) if k in QUOTE_PCRS}
        self.store.begin()
        tid = self.store.add_template(dev.serial, digest.hex(), hexed, status)
        if learn:
            self.store.set_template_status(tid, "approved")
            self._approve_in_model(i, hexed)
        self.commit([], [("template_" + ("learned" if learn else "pending"), dev.serial, {"id": tid, "digest": digest.hex()})])

    def now(self) -> float:
        return time.time()

    def _tofu(self, i: int, pcrs: dict[int, bytes]) -> None:
        """Trust on first use (spec §5): the first quote of a device whose firmware PCRs are not
        known yet fixes them, but only when its PCR 13 is a declared release the device may run.
        Later quotes are judged by the model against those PCRs + every declared PCR 13."""
        m = self.model
        if i in m.firmware:
            return
        dev = m.devices[i]
        pcr13 = pcrs[PCR_ROOTFS].hex()
        if pcrs[PCR_ROOTFS] not in m.release_pcr13(i):
            self.commit([], [("tofu_refused", dev.serial, {"pcr13": pcr13, "reason": "PCR 13 is not a declared release"})])
            return
        base = {k: v for k, v in pcrs.items() if k in QUOTE_PCRS and k != PCR_ROOTFS}
        self.store.begin()
        m.firmware[i] = base
        self.store.put_firmware_pcrs(dev.serial, {str(k): v.hex() for k, v in sorted(base.items())})
        self.commit([], [("template_learned", dev.serial, {"mode": "tofu", "pcr13": pcr13,
                                                            "digest": pcr_digest(pcrs, QUOTE_PCRS).hex()})])
