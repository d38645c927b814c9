"""The EVE controller rules with the hooks a real controller needs (spec §2, §5).

The API rules stay in :class:`eve.controller.Controller`; this subclass only draws
nonces/tokens from :mod:`secrets`, adds learned+approved PCR templates, and carries the
controller-side per-device extras (metrics, attestation history, ...).

Two more real-controller things live here:

* **content**: base OS images the controller serves from its datastore. A device's config
  ``baseos`` gets ``content: {sha256, size, url}`` when the controller holds content for that
  image name (and version, or registered without one), spec §3 step 1.
* **trust-on-first-use templates** (``tofu``) for real TPMs, spec §5: the firmware PCRs (every
  quoted PCR but 13) cannot be predicted, the OS measurement (PCR 13) is known per release. The
  first quote whose PCR 13 is a declared release of an image the device may run fixes the other
  PCRs (:attr:`RealModel.firmware`); afterwards a quote passes only with those PCRs and the PCR
  13 of a declared release (``pcr13`` of registered content, or of a pre-registered image).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from eden.controller.admin_types import AttestationResult, ContentRow, ObjectEntry, ReportSummary, StoredDevice
from eve.controller import Controller, DeviceRecord
from eve.measured_boot import PCR_ROOTFS, QUOTE_PCRS

# A template no real quote can match: used when a device has no template at all, so the model
# reports every PCR as mismatching instead of failing on an empty template list.
_NEVER = {i: b"\xff" * 32 for i in QUOTE_PCRS}
_DEVICE_FIELDS = [f.name for f in fields(DeviceRecord) if f.name != "config"]
DATASTORE_PATH = "/eden/datastore/sha256/"  # + sha256 hex: where the device API serves content


@dataclass
class Side:
    """Controller-side state the model does not keep."""

    images: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {version, measurement[, pcr13]}
    has_config: bool = False
    onboarded: bool = False
    learn: bool = False
    tofu: bool = False
    last_seen: float = 0.0
    served_hash: str = ""
    metrics: Mapping[str, object] | None = None  # the last decoded metrics report
    metrics_count: int = 0
    info_count: int = 0
    logs_count: int = 0
    attestations: list[AttestationResult] = field(default_factory=list)  # last 20 results
    # last report of each kind (spec §2.2): "ZI_DEVICE", "ZI_HARDWARE", ..., "flowlog", "hardwarehealth"
    # -> {count, received, at?, size, content_fields?}; raw bytes of unmodelled kinds: Store.last_payload
    reports: dict[str, ReportSummary] = field(default_factory=dict)
    # last info of each object (spec §2.2): "ZI_VOLUME", "ZI_CONTENT_TREE", "ZI_NETWORK_INSTANCE",
    # "ZI_HARDWARE" -> object uuid -> {at, received, data}; least recently updated first
    objects: dict[str, dict[str, ObjectEntry]] = field(default_factory=dict)
    objects_dropped: int = 0  # objects dropped to keep Limits.info_objects_per_kind
    revoked: list[str] = field(default_factory=list)  # sha256(DER) hex of revoked device certs
    manufacturer: str = ""  # UuidResponse (EVE uses both only when both are set, spec §2)
    product_name: str = ""
    certs: dict[str, str] = field(default_factory=dict)  # ATTEST_REQ_CERT: ZCertType name -> PEM
    certs_posted: int = 0
    certs_at: float = 0.0


class RealModel(Controller):
    def __init__(self, global_items: Mapping[str, object]) -> None:
        super().__init__(global_items=dict(global_items), enforce_attestation=True)
        self.side: list[Side] = []
        self.learned: dict[int, list[dict[int, bytes]]] = {}  # approved learned templates per device
        self.tofu = False  # controller-wide trust-on-first-use templates (else per device: Side.tofu)
        self.firmware: dict[int, dict[int, bytes]] = {}  # TOFU: learned PCRs (all quoted but 13)
        self.content: dict[str, dict[str, ContentRow]] = {}  # image name -> version -> content row

    def add(self, serial: str, firmware: str, images: dict[str, str]) -> int:
        i = self.add_device(serial, firmware, images)
        self.side.append(Side())
        return i

    def new_nonce(self) -> str:
        # 32 bytes on the wire: EVE's getQuote takes a nonce of 12-32 bytes (P:cmd/tpmmgr/tpmmgr.go).
        return secrets.token_hex(16)

    def new_token(self) -> str:
        return secrets.token_hex(32)

    def templates_for(self, i: int) -> list[dict[int, bytes]]:
        dev = self.devices[i]
        declared = super().templates_for(i) if dev.images else []
        templates = [*declared, *self.learned.get(i, [])]
        base = self.firmware.get(i) if self.uses_tofu(i) else None
        if base is not None:
            templates += [{**base, PCR_ROOTFS: pcr13} for pcr13 in sorted(self.release_pcr13(i))]
        return templates or [_NEVER]

    # ------------------------------------------------------------------ TOFU + content --
    def uses_tofu(self, i: int) -> bool:
        return self.tofu or self.side[i].tofu

    def allowed_images(self, i: int) -> set[str]:
        """Image names device ``i`` may run: its pre-registered images and its base OS image."""
        names = set(self.side[i].images) | set(self.devices[i].images)
        baseos = self.devices[i].baseos
        if baseos:
            names.add(str(baseos["image"]))
        return names

    def release_pcr13(self, i: int) -> set[bytes]:
        """Declared PCR 13 values of every release device ``i`` may run (spec §5)."""
        out: set[bytes] = set()
        for name in self.allowed_images(i):
            declared = self.side[i].images.get(name, {}).get("pcr13")
            if declared:
                out.add(bytes.fromhex(declared))
            for row in self.content.get(name, {}).values():
                if row_pcr13 := row["pcr13"]:
                    out.add(bytes.fromhex(row_pcr13))
        return out

    def content_for(self, image: str, version: str) -> ContentRow | None:
        """The content row serving ``image`` at ``version`` (or registered without a version)."""
        versions = self.content.get(image, {})
        return versions.get(version) or versions.get("")

    def forget_templates(self, i: int) -> None:
        """Declared images changed: recompute the model's cached templates."""
        self._templates.pop(i, None)

    def config_for(self, i: int) -> dict[str, Any]:
        dev = self.devices[i]
        if dev.config is None:
            cfg = super().config_for(i)
            row = self.content_for(str(dev.baseos["image"]), str(dev.baseos["version"])) if dev.baseos else None
            if row:
                cfg = {k: v for k, v in cfg.items() if k != "hash"}
                content = {"sha256": row["sha256"], "size": row["size"], "url": DATASTORE_PATH + row["sha256"]}
                cfg["baseos"] = {**cfg["baseos"], "content": content}
                dev.hash = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:32]
                cfg["hash"] = dev.hash
                dev.config = cfg
        return dev.config  # type: ignore[return-value]

    # ----------------------------------------------------------------- persistence --
    def dump(self, i: int) -> StoredDevice:
        dev = self.devices[i]
        return {"device": {k: getattr(dev, k) for k in _DEVICE_FIELDS}, "side": asdict(self.side[i])}

    def restore(self, state: StoredDevice, at: int | None = None) -> int:
        """Add a device from its stored state, or (``at``) put device ``at`` back to it."""
        d = state["device"]
        if at is None:
            i = self.add(d["serial"], d["firmware"], d["images"])
        else:
            i = at
            self.devices[i] = DeviceRecord(serial=d["serial"], firmware=d["firmware"], images=d["images"])
            self._templates.pop(i, None)
        dev = self.devices[i]
        for k in _DEVICE_FIELDS:
            if k in d:
                setattr(dev, k, d[k])
        dev.config = None
        side = dict(state.get("side", {}))
        legacy = side.pop("shutdown", 0)  # rows stored before the counter moved into DeviceRecord
        if legacy and "shutdown" not in d:
            dev.shutdown = legacy
        self.side[i] = Side(**side)
        return i
