"""EVE's controller API semantics (spec §1, §2, §5): what a controller keeps per device and answers.

Per-device state is what a real controller keeps: pre-registration, device cert, the desired
config and its hash, the attestation nonce / integrity token / escrowed key, and the latest device
info, which is what expectations read. Admin operations change the desired config; :meth:`answer`
applies the API v2 rules to one request. How fast a controller answers is not modelled here
(the simulator adds that in :mod:`simulator.capacity`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from eve.measured_boot import QUOTE_PCRS, expected_pcrs, mismatching_pcrs, pcr_digest

DEFAULT_METRIC_INTERVAL = 60  # seconds: timer.metric.interval's default (spec §6)
_UUID_PATH_KINDS = frozenset({"config", "info", "metrics", "logs", "attest"})
"""Requests under the device's ``id/<uuid>/`` (spec §2): a record with another UUID answers 404."""
SETTLED_STATUS: dict[str, int] = {"config": 304, "info": 201, "metrics": 201, "ping": 200, "logs": 201}
"""What :meth:`Controller.answer` gives a settled device's periodic request (spec §2): config polls
with the current hash 304, info, metrics and newlogs posts 201, ping 200. The simulator counts the
requests it answers in bulk with these statuses, without calling :meth:`Controller.answer`;
tests/test_request_status.py checks the table against the rules."""


def dormant_time(metric_interval: Any) -> float:
    """How long a device may stay silent and still count as connected: 3 x its metric interval
    (spec §1: metrics advertise ``dormant_time_in_seconds`` = 3 x ``timer.metric.interval``)."""
    try:
        return 3.0 * float(metric_interval)
    except (TypeError, ValueError):
        return 3.0 * DEFAULT_METRIC_INTERVAL


def connected(now: float, last_seen: Any, metric_interval: Any) -> Any:
    """Whether a device last heard from at ``last_seen`` is connected at ``now`` (spec §1).

    ``last_seen`` may be an array of times: the answer is then an array of booleans."""
    return now - last_seen <= dormant_time(metric_interval)


@dataclass
class DeviceRecord:
    serial: str
    firmware: str
    images: dict[str, str]  # image name -> rootfs measurement a clean release build gives
    preregistered: bool = True
    cert: str | None = None
    uuid: str | None = None
    baseos: dict[str, Any] | None = None
    reboot: int = 0
    shutdown: int = 0
    """EdgeDevConfig.shutdown's DeviceOpsCmd counter (field 34), sent from the first config on
    like ``reboot``: the first value a device sees is only stored (spec §1)."""
    items: dict[str, Any] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    maintenance: bool = False
    network: dict[str, Any] | None = None
    """The network config (system adapters) pushed with ``set_network``; None: never pushed."""
    ver: int = 0
    hash: str = ""
    config: dict[str, Any] | None = None
    nonce: str | None = None
    token: str | None = None
    token_required: bool = False
    escrow: str | None = None
    info: dict[str, Any] | None = None
    attest_failures: int = 0
    certs_posted: int = 0
    """Accepted ATTEST_REQ_CERT posts (§5)."""
    refuse_certs: bool = False
    """The controller refuses the device's certs (``refuse_device_certs``): ATTEST_REQ_CERT gets 404."""
    deleted: bool = False
    """The record was deleted and not created again (``delete_device`` recreate none): the
    device's requests find nothing (404), a register is refused as not pre-registered (403)."""
    knows_cert: bool = True
    """False for a record created again by serial (recreate onboarding): the device's cert is
    unknown until it registers again, so its uuid lookups and id/<uuid>/ requests get 404."""
    generation: int = 0
    """How many times the record was created again: each creation has a new UUID."""


class Controller:
    """The controller's per-device records and the API rules that read and change them."""

    def __init__(self, *, global_items: dict[str, Any], enforce_attestation: bool) -> None:
        self.global_items = dict(global_items)
        self.enforce = enforce_attestation
        self.devices: list[DeviceRecord] = []
        self._nonce = 0
        self._token = 0
        self.info_journal: list[int] = []  # device index per info message received, in order
        self._templates: dict[int, list[dict[int, bytes]]] = {}
        self._shared: dict[tuple[str, str, str], dict[int, bytes]] = {}
        self.any_deleted = False  # a delete_device happened: requests are checked with :meth:`attributed`

    # -------------------------------------------------------------------------------- devices --
    def add_device(self, serial: str, firmware: str, images: dict[str, str]) -> int:
        self.devices.append(DeviceRecord(serial=serial, firmware=firmware, images=images))
        return len(self.devices) - 1

    def metric_interval(self, i: int) -> Any:
        """Device ``i``'s ``timer.metric.interval``: its own item, else the global one."""
        default = self.global_items.get("timer.metric.interval", DEFAULT_METRIC_INTERVAL)
        return self.devices[i].items.get("timer.metric.interval", default)

    def config_changed(self, i: int) -> None:
        """Hook: device ``i``'s desired config got a new version (``devices[i].ver``)."""

    def attestation_changed(self, i: int) -> None:
        """Hook: device ``i``'s token or token requirement changed."""

    def _changed(self, i: int) -> None:
        dev = self.devices[i]
        dev.ver += 1
        dev.config = None
        self.config_changed(i)

    def config_for(self, i: int) -> dict[str, Any]:
        dev = self.devices[i]
        if dev.config is None:
            cfg: dict[str, Any] = {
                "items": {**self.global_items, **dev.items},
                "baseos": dev.baseos,
                "reboot": dev.reboot,
                "shutdown": dev.shutdown,
                "apps": dev.apps,
                "maintenance": dev.maintenance,
            }
            if dev.network is not None:
                cfg["network"] = dev.network
            dev.hash = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:32]
            cfg["hash"] = dev.hash
            dev.config = cfg
        return dev.config

    # ------------------------------------------------------------------------ admin operations --
    def set_items(self, indices: list[int], items: dict[str, Any], *, globally: bool) -> None:
        if globally:
            self.global_items.update(items)
        for i in indices:
            if not globally:
                self.devices[i].items.update(items)
            self._changed(i)

    def force_fallback(self, indices: list[int]) -> None:
        """Raise each device's ``force.fallback.counter`` by one (spec §3: a changed counter makes the
        device fall back to the other partition)."""
        key = "force.fallback.counter"
        for i in indices:
            dev = self.devices[i]
            current = int(dev.items.get(key, self.global_items.get(key, 0)))
            dev.items[key] = current + 1
            self._changed(i)

    def set_baseos(self, indices: list[int], image: str, version: str, activate: bool) -> None:
        for i in indices:
            dev = self.devices[i]
            retry = dev.baseos["retry"] if dev.baseos else 0
            dev.baseos = {"image": image, "version": version, "activate": activate, "retry": retry}
            self._changed(i)

    def retry_update(self, indices: list[int]) -> None:
        for i in indices:
            dev = self.devices[i]
            if dev.baseos is not None:
                dev.baseos = {**dev.baseos, "retry": dev.baseos["retry"] + 1}
                self._changed(i)

    def reboot(self, indices: list[int]) -> None:
        for i in indices:
            self.devices[i].reboot += 1
            self._changed(i)

    def shutdown(self, indices: list[int]) -> None:
        """Raise each device's shutdown counter (spec §1 DeviceOpsCmd; api:proto/config/devconfig.proto
        ``shutdown``): the device halts its apps and stays up, PREPARED_POWEROFF. There is no
        power-off counterpart: the controller cannot power a device off (or on again)."""
        for i in indices:
            self.devices[i].shutdown += 1
            self._changed(i)

    def delete_device(self, indices: list[int], recreate: str) -> None:
        """Delete each device's record (spec §1 "404/400", P:cmd/zedagent/handleconfig.go
        ``potentialUUIDUpdate``, P:cmd/client/client.go), and with ``recreate`` create it again:

        * ``none``: gone. Every request of the device is unknown (404); it cannot register (403).
        * ``onboarding``: pre-registered again by serial. The old device cert is not known: 404
          until the device registers again, which EVE's client does only at its next boot.
        * ``cert``: created again with the device's cert under a new UUID. Requests on the old
          ``id/<uuid>/`` get 404, and the device's uuid lookup (at most every 10 min) finds the new one.

        The new record keeps the desired config (as an admin re-adding a device with its project's
        config would); what belonged to the old one goes: integrity token, nonce, escrowed key,
        the last info, the attestation failures."""
        self.any_deleted = True
        for i in indices:
            dev = self.devices[i]
            dev.generation += 1
            dev.nonce = dev.token = dev.escrow = dev.info = None
            dev.token_required = False
            dev.attest_failures = 0
            if recreate == "none":
                dev.deleted, dev.preregistered, dev.cert, dev.uuid = True, False, None, None
            elif recreate == "onboarding":
                dev.cert, dev.uuid, dev.knows_cert = None, None, False
            elif recreate == "cert":
                dev.uuid = self._new_uuid(dev)
            else:
                raise ValueError(f"recreate must be none, onboarding or cert, got {recreate!r}")
            self.attestation_changed(i)
            self._changed(i)

    @staticmethod
    def _new_uuid(dev: DeviceRecord) -> str:
        seed = dev.serial if dev.generation == 0 else f"{dev.serial}#{dev.generation}"
        return hashlib.sha256(seed.encode()).hexdigest()[:32]

    def attributed(self, i: int, kind: str, uuid: str | None) -> bool:
        """Whether a request of device ``i`` reaches its record: not after a deletion, nor with a
        cert the record does not know, nor (``uuid`` given) under another record's ``id/<uuid>/``.
        Only an attributed request counts as contact (``last_seen``)."""
        dev = self.devices[i]
        if dev.deleted:
            return False
        if not dev.knows_cert:
            return kind == "register"
        return uuid is None or dev.uuid is None or kind not in _UUID_PATH_KINDS or uuid == dev.uuid

    def set_app(self, indices: list[int], name: str, spec: dict[str, Any] | None) -> None:
        for i in indices:
            apps = dict(self.devices[i].apps)
            if spec is None:
                apps.pop(name, None)
            else:
                apps[name] = spec
            self.devices[i].apps = apps
            self._changed(i)

    def set_network(self, indices: list[int], mgmt: list[str], broken: bool) -> None:
        """A new network config (§4): the device's management ports; ``broken`` gives them a
        config that cannot reach the controller. Each push is a new config version."""
        for i in indices:
            dev = self.devices[i]
            version = (dev.network or {}).get("version", 0) + 1
            dev.network = {"version": version, "mgmt": list(mgmt), "broken": broken}
            self._changed(i)

    def refuse_certs(self, indices: list[int], enable: bool) -> None:
        """Refuse (``enable``) or accept again each device's ATTEST_REQ_CERT posts (§5)."""
        for i in indices:
            self.devices[i].refuse_certs = enable

    def set_maintenance(self, indices: list[int], enable: bool) -> None:
        for i in indices:
            self.devices[i].maintenance = enable
            self._changed(i)

    def revoke_token(self, indices: list[int]) -> None:
        """Ask for a fresh attestation: the next config request with the old token gets 403 (§1)."""
        for i in indices:
            dev = self.devices[i]
            if dev.token is not None:
                dev.token = None
                dev.token_required = True
                self.attestation_changed(i)

    # ------------------------------------------------------------------------------- requests --
    def answer(self, i: int, kind: str, body: dict[str, Any], uuid: str | None = None) -> tuple[int, dict[str, Any]]:
        """The EVE API v2 rules for one admitted request (§2, §5): (HTTP status, body).

        ``uuid``: the device's ``id/<uuid>/`` in the request path, where the caller knows it (the
        simulator); None skips that check.

        Shared by the simulator (behind its capacity model) and the real controller
        (:mod:`eden.controller`), which decodes the protobuf request into the same body dict and
        encodes the answer back."""
        dev = self.devices[i]
        if kind in ("certs", "ping"):
            return 200, {}
        if kind == "register":
            if not dev.preregistered:
                return 403, {}
            if dev.cert is None:
                dev.cert = body.get("cert")
                dev.knows_cert = True
                return 201, {}
            return (200 if dev.cert == body.get("cert") else 409), {}
        if self.any_deleted and not self.attributed(i, kind, uuid):
            return 404, {}  # no record for this cert, or not under this uuid (§1 "404/400")
        if kind == "uuid":
            if dev.cert is None:
                return 404, {}
            dev.uuid = dev.uuid or self._new_uuid(dev)
            return 200, {"uuid": dev.uuid}
        if kind == "config":
            if dev.token_required and body.get("token") != dev.token:
                return 403, {}  # attestation required (§2: 403 = attestation failure)
            cfg = self.config_for(i)
            if body.get("hash") == dev.hash:
                return 304, {"ver": dev.ver}
            return 200, {"config": cfg, "ver": dev.ver}
        if kind == "info":
            dev.info = body
            self.info_journal.append(i)
            return 201, {}
        if kind == "metrics":
            return 201, {}
        if kind == "logs":
            # §2 POST id/{uuid}/newlogs: 201 (gzip of LogEntry; EVE counts only 200/201 as sent)
            return (201 if dev.uuid is not None else 404), {}
        if kind == "attest":
            return self._attest(i, dev, body)
        return 400, {}

    def _attest(self, i: int, dev: DeviceRecord, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        req = body.get("type")
        if req == "NONCE":
            dev.nonce = self.new_nonce()
            return 201, {"type": "NONCE", "nonce": dev.nonce}
        if req == "QUOTE":
            if body.get("nonce") != dev.nonce or dev.nonce is None:
                return 201, {"type": "QUOTE", "code": "NONCE_MISMATCH"}
            dev.nonce = None
            mismatch: list[int] = []
            if body.get("tpm") and self.enforce:
                pcrs = {int(k): bytes.fromhex(v) for k, v in body.get("pcrs", {}).items()}
                templates = self.templates_for(i)
                digest = pcr_digest(pcrs, QUOTE_PCRS)
                if all(pcr_digest(tpl, QUOTE_PCRS) != digest for tpl in templates):
                    mismatch = min((mismatching_pcrs(pcrs, tpl, QUOTE_PCRS) for tpl in templates), key=len)
            if mismatch:
                # The device is not trusted: no token, no escrowed key. Config is still served, so
                # the device can report and run into its vault cutoff (§5) instead of looping on 403.
                dev.attest_failures += 1
                dev.token = None
                dev.token_required = False
                self.attestation_changed(i)
                return 201, {"type": "QUOTE", "code": "QUOTE_FAILED", "mismatch": mismatch}
            dev.token = self.new_token()
            dev.token_required = bool(body.get("tpm"))
            self.attestation_changed(i)
            return 201, {"type": "QUOTE", "code": "SUCCESS", "token": dev.token, "key": dev.escrow}
        if req == "STORE_KEYS":
            if dev.token is None or body.get("token") != dev.token:
                return 201, {"type": "STORE_KEYS", "code": "ITOKEN_MISMATCH"}
            dev.escrow = body.get("key")
            return 201, {"type": "STORE_KEYS", "code": "SUCCESS"}
        if req == "CERT":
            # ATTEST_REQ_CERT (§5): stored, 201 with ATTEST_RESP_CERT; refused with 404 ("a cert can
            # not be replaced for security reasons", P:cmd/zedagent/zedagent.go) while told to
            if dev.refuse_certs:
                return 404, {}
            dev.certs_posted += 1
            return 201, {"type": "CERT"}
        return 422, {}

    def new_nonce(self) -> str:
        """A fresh attestation nonce. Deterministic here; the real controller draws random bytes."""
        self._nonce += 1
        return f"nonce-{self._nonce}"

    def new_token(self) -> str:
        """A fresh integrity token (same note as :meth:`new_nonce`)."""
        self._token += 1
        return f"itoken-{self._token}"

    def templates_for(self, i: int) -> list[dict[int, bytes]]:
        """Approved PCR templates: every released image on this device's firmware, either slot."""
        if i not in self._templates:
            dev = self.devices[i]
            # PCR 14 is the only device-specific measurement (its /config); the rest is shared by
            # every device with the same firmware and image, so compute that part once.
            pcr14 = expected_pcrs(firmware="", rootfs="", grub_cfg="", config=f"config:{dev.serial}")[14]
            templates = []
            for rootfs in dev.images.values():
                for label in ("IMGA", "IMGB"):
                    key = (dev.firmware, rootfs, label)
                    if key not in self._shared:
                        self._shared[key] = expected_pcrs(firmware=dev.firmware, rootfs=rootfs, grub_cfg=f"grub.cfg:{label}", config="")
                    templates.append({**self._shared[key], 14: pcr14})
            self._templates[i] = templates
        return self._templates[i]
