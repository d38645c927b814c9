"""ControllerModel with the hooks a real controller needs (spec §2, §5).

The API rules stay in :class:`simulator.controller.ControllerModel`; this subclass only draws
nonces/tokens from :mod:`secrets`, adds learned+approved PCR templates, and carries the
controller-side per-device extras (shutdown counter, metrics, attestation history, ...).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from simulator.controller import ControllerModel, DeviceRecord
from simulator.eve.measured_boot import QUOTE_PCRS

# A template no real quote can match: used when a device has no template at all, so the model
# reports every PCR as mismatching instead of failing on an empty template list.
_NEVER = {i: b"\xff" * 32 for i in QUOTE_PCRS}
_DEVICE_FIELDS = [f.name for f in fields(DeviceRecord) if f.name != "config"]


@dataclass
class Side:
    """Controller-side state the model does not keep."""

    images: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {version, measurement}
    has_config: bool = False
    onboarded: bool = False
    learn: bool = False
    shutdown: int = 0
    last_seen: float = 0.0
    served_hash: str = ""
    metrics: dict[str, Any] | None = None
    metrics_count: int = 0
    info_count: int = 0
    logs_count: int = 0
    attestations: list[dict[str, Any]] = field(default_factory=list)  # last 20 results


class RealModel(ControllerModel):
    def __init__(self, global_items: dict[str, Any]) -> None:
        super().__init__(workers=1, service_time=0.001, queue_limit=1 << 30, global_items=global_items,
                         enforce_attestation=True)
        self.side: list[Side] = []
        self.learned: dict[int, list[dict[int, bytes]]] = {}  # approved learned templates per device

    def add(self, serial: str, firmware: str, images: dict[str, str]) -> int:
        i = self.add_device(serial, firmware, images)
        self.side.append(Side())
        return i

    def new_nonce(self) -> str:
        return secrets.token_hex(32)

    def new_token(self) -> str:
        return secrets.token_hex(32)

    def templates_for(self, i: int) -> list[dict[int, bytes]]:
        dev = self.devices[i]
        declared = super().templates_for(i) if dev.images else []
        templates = [*declared, *self.learned.get(i, [])]
        return templates or [_NEVER]

    def forget_templates(self, i: int) -> None:
        """Declared images changed: recompute the model's cached templates."""
        self._templates.pop(i, None)

    def config_for(self, i: int) -> dict[str, Any]:
        dev = self.devices[i]
        if dev.config is None:
            cfg = super().config_for(i)
            shutdown = self.side[i].shutdown
            if shutdown:
                cfg = {k: v for k, v in cfg.items() if k != "hash"}
                cfg["shutdown"] = shutdown
                dev.hash = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:32]
                cfg["hash"] = dev.hash
                dev.config = cfg
        return dev.config  # type: ignore[return-value]

    def bump_shutdown(self, indices: list[int]) -> None:
        for i in indices:
            self.side[i].shutdown += 1
            self._changed(i)

    # ----------------------------------------------------------------- persistence --
    def dump(self, i: int) -> dict[str, Any]:
        dev = self.devices[i]
        return {"device": {k: getattr(dev, k) for k in _DEVICE_FIELDS}, "side": asdict(self.side[i])}

    def restore(self, state: dict[str, Any]) -> int:
        d = state["device"]
        i = self.add(d["serial"], d["firmware"], d["images"])
        dev = self.devices[i]
        for k in _DEVICE_FIELDS:
            if k in d:
                setattr(dev, k, d[k])
        dev.config = None
        self.ctrl_ver[i] = dev.ver
        self.needs_slow[i] = dev.token_required and dev.token is None
        self.side[i] = Side(**state.get("side", {}))
        return i
