"""The controller as the simulator sees it: EVE's API semantics (:mod:`eve.controller`) behind a
finite capacity (:mod:`simulator.capacity`), plus the per-device arrays the engine's bulk path reads."""

from __future__ import annotations

from typing import Any

import numpy as np

from eve.controller import Controller, DeviceRecord
from simulator.capacity import RTT, Capacity, LatencyStats

__all__ = ["RTT", "ControllerModel", "DeviceRecord", "LatencyStats"]


class ControllerModel(Controller, Capacity):
    def __init__(
        self,
        *,
        workers: int,
        service_time: float,
        queue_limit: int,
        global_items: dict[str, Any],
        enforce_attestation: bool,
        series_step: float = 60.0,
    ) -> None:
        Controller.__init__(self, global_items=global_items, enforce_attestation=enforce_attestation)
        Capacity.__init__(self, workers=workers, service_time=service_time, queue_limit=queue_limit,
                          series_step=series_step)
        # read by the engine: devices whose traffic cannot be answered in bulk
        self.ctrl_ver = np.zeros(0, dtype=np.int64)
        self.needs_slow = np.zeros(0, dtype=bool)
        self.last_seen = np.zeros(0)

    def add_device(self, serial: str, firmware: str, images: dict[str, str]) -> int:
        i = super().add_device(serial, firmware, images)
        n = i + 1
        if n > self.ctrl_ver.size:  # grow geometrically: fleets are added one device at a time
            cap = max(16, 2 * n)
            self.ctrl_ver = np.pad(self.ctrl_ver, (0, cap - self.ctrl_ver.size))
            self.needs_slow = np.pad(self.needs_slow, (0, cap - self.needs_slow.size))
            self.last_seen = np.pad(self.last_seen, (0, cap - self.last_seen.size), constant_values=-np.inf)
        return i

    def seal(self) -> None:
        """Trim the per-device arrays to the fleet size once every device is added."""
        n = len(self.devices)
        self.ctrl_ver = self.ctrl_ver[:n].copy()
        self.needs_slow = self.needs_slow[:n].copy()
        self.last_seen = self.last_seen[:n].copy()

    def config_changed(self, i: int) -> None:
        self.ctrl_ver[i] = self.devices[i].ver

    def handle(self, i: int, kind: str, body: dict[str, Any], t: float,
               uuid: str | None = None) -> tuple[int, dict[str, Any], float]:
        """Answer one request from device ``i`` (under ``id/<uuid>/``) at time ``t``: (HTTP status,
        body, latency)."""
        accepted, latency = self._admit(t)
        if self.last_seen[i] < t and (not self.any_deleted or self.attributed(i, kind, uuid)):
            self.last_seen[i] = t
        if not accepted:
            self.record(kind, t, latency, False, 503)
            return 503, {}, latency
        status, answer = self.answer(i, kind, body, uuid)
        self.record(kind, t, latency, True, status)
        return status, answer, latency

    def delete_device(self, indices: list[int], recreate: str) -> None:
        super().delete_device(indices, recreate)
        for i in indices:
            self.last_seen[i] = -np.inf  # a new record (or none) has heard nothing yet
            self.needs_slow[i] = True  # its requests are judged one by one, never answered in bulk

    def attestation_changed(self, i: int) -> None:
        dev = self.devices[i]
        self.needs_slow[i] = (dev.token_required and dev.token is None) or dev.generation > 0
