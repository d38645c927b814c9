"""The controller as the simulator sees it: EVE API v2 semantics (§2, §5) with a finite capacity.

Capacity is modelled as ``workers`` servers with a fixed ``service_time`` feeding one FIFO queue,
approximated by a single server that completes one request every ``service_time / workers``
(Lindley's recursion). A request that would find more than ``queue_limit`` requests waiting is
answered 503 at once. Bulk (vectorised) arrivals and single requests share that queue.

Per-device state is what a real controller keeps: pre-registration, device cert, the desired
config and its hash, the attestation nonce / integrity token / escrowed key, and the latest device
info, which is what expectations read.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eve.measured_boot import QUOTE_PCRS, expected_pcrs, mismatching_pcrs, pcr_digest

RTT = 0.03  # seconds of network round trip added to every answered request
KINDS = ("certs", "register", "uuid", "config", "info", "metrics", "attest", "ping", "logs")
SERIES_KINDS = ("logs",)  # request kinds that also get their own per-minute series (plots)
_HIST_EDGES = np.concatenate([[0.0], np.logspace(-4, 4, 801)])  # 100 us .. 10^4 s, 100 bins/decade


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


def _bin_counts(lat: np.ndarray) -> np.ndarray:
    """Histogram over _HIST_EDGES without a binary search: the edges are log-spaced."""
    with np.errstate(divide="ignore"):
        idx = np.floor((np.log10(np.clip(lat, 1e-12, 1e4)) + 4.0) * 100.0).astype(np.int64) + 1
    idx = np.clip(idx, 0, len(_HIST_EDGES) - 2)
    idx[lat < _HIST_EDGES[1]] = 0
    return np.bincount(idx, minlength=len(_HIST_EDGES) - 1)


class LatencyStats:
    """Latency histogram and status counts for one request kind (constant memory at any scale).

    Latencies are buffered and folded into the histogram in chunks: one ``np.histogram`` call per
    request would cost more than simulating the request."""

    FLUSH = 200_000

    def __init__(self) -> None:
        self.hist = np.zeros(len(_HIST_EDGES) - 1, dtype=np.int64)
        self.count = 0
        self.rejected = 0
        self.sum = 0.0
        self.max = 0.0
        self._chunks: list[np.ndarray] = []
        self._singles: list[float] = []
        self._pending = 0

    def add(self, latencies: np.ndarray) -> None:
        if latencies.size:
            self._chunks.append(latencies)
            self._pending += latencies.size
            if self._pending >= self.FLUSH:
                self.flush()

    def add_one(self, latency: float) -> None:
        self._singles.append(latency)
        self._pending += 1
        if self._pending >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._singles:
            self._chunks.append(np.asarray(self._singles, dtype=float))
            self._singles = []
        if not self._chunks:
            return
        lat = np.concatenate(self._chunks)
        self._chunks = []
        self._pending = 0
        self.hist += _bin_counts(lat)
        self.count += int(lat.size)
        self.sum += float(lat.sum())
        self.max = max(self.max, float(lat.max()))

    def quantile(self, q: float) -> float:
        self.flush()
        if self.count == 0:
            return 0.0
        rank = q * self.count
        cum = np.cumsum(self.hist)
        idx = int(np.searchsorted(cum, rank, side="left"))
        return float(_HIST_EDGES[min(idx + 1, len(_HIST_EDGES) - 1)])


class Series:
    """Per-minute request counts and latency totals, accumulated with bincount in chunks."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.data: dict[str, np.ndarray] = {k: np.zeros(0) for k in ("requests", "rejected", "latency_sum", "latency_max")}
        self._t: list[np.ndarray] = []
        self._lat: list[np.ndarray] = []
        self._acc: list[np.ndarray] = []
        self._st: list[float] = []
        self._sl: list[float] = []
        self._sa: list[bool] = []
        self._pending = 0

    def add(self, t: np.ndarray, lat: np.ndarray, acc: np.ndarray) -> None:
        self._t.append(t)
        self._lat.append(lat)
        self._acc.append(acc)
        self._pending += t.size
        if self._pending >= LatencyStats.FLUSH:
            self.flush()

    def add_one(self, t: float, lat: float, acc: bool) -> None:
        self._st.append(t)
        self._sl.append(lat)
        self._sa.append(acc)
        self._pending += 1
        if self._pending >= LatencyStats.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._st:
            self._t.append(np.asarray(self._st))
            self._lat.append(np.asarray(self._sl))
            self._acc.append(np.asarray(self._sa, dtype=bool))
            self._st, self._sl, self._sa = [], [], []
        if not self._t:
            return
        t = np.concatenate(self._t)
        lat = np.concatenate(self._lat)
        acc = np.concatenate(self._acc)
        self._t, self._lat, self._acc = [], [], []
        self._pending = 0
        bins = (t // self.step).astype(np.int64)
        n = max(int(bins.max()) + 1, self.data["requests"].size)
        grow = {k: np.pad(v, (0, n - v.size)) for k, v in self.data.items()}
        grow["requests"] += np.bincount(bins, minlength=n)
        grow["rejected"] += np.bincount(bins, weights=(~acc).astype(float), minlength=n)
        grow["latency_sum"] += np.bincount(bins, weights=np.where(acc, lat, 0.0), minlength=n)
        np.maximum.at(grow["latency_max"], bins[acc], lat[acc])
        self.data = grow

    def as_lists(self) -> dict[str, list[float]]:
        self.flush()
        return {k: [round(float(x), 6) for x in v] for k, v in self.data.items()}


class ControllerModel:
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
        self.service = service_time
        self.step = service_time / workers
        self.queue_limit = queue_limit
        self.free_at = 0.0
        self._win_end = np.zeros(0)
        self._win_arr_l: list[float] = []
        self._win_end_l: list[float] = []
        self._win_carry = 0.0
        self.mode = "up"  # up | down | 503
        self.global_items = dict(global_items)
        self.enforce = enforce_attestation
        self.devices: list[DeviceRecord] = []
        self.stats = {k: LatencyStats() for k in KINDS}
        self.series = Series(series_step)
        self.kind_series = {k: Series(series_step) for k in SERIES_KINDS}
        self._nonce = 0
        self._token = 0
        self.info_journal: list[int] = []  # device index per info message received, in order
        self._templates: dict[int, list[dict[int, bytes]]] = {}
        self._shared: dict[tuple[str, str, str], dict[int, bytes]] = {}
        # set by the engine: devices whose traffic cannot be answered in bulk
        self.ctrl_ver = np.zeros(0, dtype=np.int64)
        self.needs_slow = np.zeros(0, dtype=bool)
        self.last_seen = np.zeros(0)

    # -------------------------------------------------------------------------------- devices --
    def add_device(self, serial: str, firmware: str, images: dict[str, str]) -> int:
        self.devices.append(DeviceRecord(serial=serial, firmware=firmware, images=images))
        n = len(self.devices)
        if n > self.ctrl_ver.size:  # grow geometrically: fleets are added one device at a time
            cap = max(16, 2 * n)
            self.ctrl_ver = np.pad(self.ctrl_ver, (0, cap - self.ctrl_ver.size))
            self.needs_slow = np.pad(self.needs_slow, (0, cap - self.needs_slow.size))
            self.last_seen = np.pad(self.last_seen, (0, cap - self.last_seen.size), constant_values=-np.inf)
        return n - 1

    def seal(self) -> None:
        """Trim the per-device arrays to the fleet size once every device is added."""
        n = len(self.devices)
        self.ctrl_ver = self.ctrl_ver[:n].copy()
        self.needs_slow = self.needs_slow[:n].copy()
        self.last_seen = self.last_seen[:n].copy()

    def dormant_time(self, i: int) -> float:
        """3 x the device's metric interval: silence longer than this means offline (§1)."""
        dev = self.devices[i]
        interval = dev.items.get("timer.metric.interval", self.global_items.get("timer.metric.interval", 60))
        try:
            return 3.0 * float(interval)
        except (TypeError, ValueError):
            return 180.0

    def _changed(self, i: int) -> None:
        dev = self.devices[i]
        dev.ver += 1
        dev.config = None
        self.ctrl_ver[i] = dev.ver

    def config_for(self, i: int) -> dict[str, Any]:
        dev = self.devices[i]
        if dev.config is None:
            cfg = {
                "items": {**self.global_items, **dev.items},
                "baseos": dev.baseos,
                "reboot": dev.reboot,
                "apps": dev.apps,
                "maintenance": dev.maintenance,
            }
            if dev.network is not None:
                cfg["network"] = dev.network
            dev.hash = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:32]
            cfg["hash"] = dev.hash
            dev.config = cfg
        return dev.config

    # -------------------------------------------------------------------- harness (admin) side --
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
                self.needs_slow[i] = True

    # ---------------------------------------------------------------------------------- queue --
    def _backlog_end(self, t: float) -> float:
        """When the server would be free of the bulk requests that arrived up to ``t``."""
        j = bisect.bisect_right(self._win_arr_l, t) - 1
        return self._win_end_l[j] if j >= 0 else self._win_carry

    def _admit(self, t: float) -> tuple[bool, float]:
        free = max(self.free_at, self._backlog_end(t))
        waiting = (free - t) / self.step if free > t else 0.0
        if self.mode == "503" or waiting > self.queue_limit:
            return False, RTT
        start = max(t, free)
        self.free_at = start + self.step
        return True, start - t + self.service + RTT

    def admit_batch(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Admit a window of bulk arrivals (sorted, possibly ahead of the clock): (accepted, latency).

        The window's completion times are kept, so a single request arriving at ``t`` inside the
        window queues behind exactly the bulk requests that arrived before ``t`` (single requests
        do not delay the bulk ones already planned: a small, documented approximation)."""
        n = times.size
        if n == 0:
            return np.zeros(0, dtype=bool), np.zeros(0)
        if self.mode == "503":
            return np.zeros(n, dtype=bool), np.full(n, RTT)
        carry = max(self.free_at, float(self._win_end[-1]) if self._win_end.size else 0.0)
        k = np.arange(n) * self.step
        starts = k + np.maximum(carry, np.maximum.accumulate(times - k))
        waits = starts - times
        if waits.max() / self.step <= self.queue_limit:
            ok = np.ones(n, dtype=bool)
            ends = starts + self.step
            lat = waits + self.service + RTT
        else:  # overloaded: the exact recursion with rejections
            ok = np.zeros(n, dtype=bool)
            lat = np.full(n, RTT)
            ends = np.empty(n)
            free = carry
            for j in range(n):
                t = float(times[j])
                wait = max(0.0, free - t)
                if wait / self.step <= self.queue_limit:
                    ok[j] = True
                    free = t + wait + self.step
                    lat[j] = wait + self.service + RTT
                ends[j] = free
        self._win_carry = carry
        self._win_end = np.maximum.accumulate(ends)
        self._win_arr_l = times.tolist()
        self._win_end_l = self._win_end.tolist()
        return ok, lat

    def record(self, kind: str, t: float, latency: float, accepted: bool) -> None:
        """Account one request (single path)."""
        st = self.stats[kind]
        if accepted:
            st.add_one(latency)
        else:
            st.rejected += 1
        self.series.add_one(t, latency, accepted)
        if kind in self.kind_series:
            self.kind_series[kind].add_one(t, latency, accepted)

    def record_batch(self, kind: str, t: np.ndarray, latency: np.ndarray) -> None:
        """Account a batch of accepted bulk requests."""
        self.stats[kind].add(latency)
        self.series.add(t, latency, np.ones(t.size, dtype=bool))
        if kind in self.kind_series:
            self.kind_series[kind].add(t, latency, np.ones(t.size, dtype=bool))

    # ------------------------------------------------------------------------------- requests --
    def handle(self, i: int, kind: str, body: dict[str, Any], t: float) -> tuple[int, dict[str, Any], float]:
        """Answer one request from device ``i`` at time ``t``: (HTTP status, body, latency)."""
        accepted, latency = self._admit(t)
        self.record(kind, t, latency, accepted)
        if self.last_seen[i] < t:
            self.last_seen[i] = t
        if not accepted:
            return 503, {}, latency
        status, answer = self.answer(i, kind, body)
        return status, answer, latency

    def answer(self, i: int, kind: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The EVE API v2 rules for one admitted request (§2, §5): (HTTP status, body).

        Shared by the simulator and the real controller (:mod:`eden.controller`), which decodes
        the protobuf request into the same body dict and encodes the answer back."""
        dev = self.devices[i]
        if kind in ("certs", "ping"):
            return 200, {}
        if kind == "register":
            if not dev.preregistered:
                return 403, {}
            if dev.cert is None:
                dev.cert = body.get("cert")
                return 201, {}
            return (200 if dev.cert == body.get("cert") else 409), {}
        if kind == "uuid":
            if dev.cert is None:
                return 404, {}
            dev.uuid = dev.uuid or hashlib.sha256(dev.serial.encode()).hexdigest()[:32]
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
                self.needs_slow[i] = False
                return 201, {"type": "QUOTE", "code": "QUOTE_FAILED", "mismatch": mismatch}
            dev.token = self.new_token()
            dev.token_required = bool(body.get("tpm"))
            self.needs_slow[i] = False
            return 201, {"type": "QUOTE", "code": "SUCCESS", "token": dev.token, "key": dev.escrow}
        if req == "STORE_KEYS":
            if dev.token is None or body.get("token") != dev.token:
                return 201, {"type": "STORE_KEYS", "code": "ITOKEN_MISMATCH"}
            dev.escrow = body.get("key")
            return 201, {"type": "STORE_KEYS", "code": "SUCCESS"}
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

    # -------------------------------------------------------------------------------- reports --
    def latency_summary(self) -> dict[str, Any]:
        total = LatencyStats()
        for st in self.stats.values():
            st.flush()
            total.hist += st.hist
            total.count += st.count
            total.rejected += st.rejected
            total.sum += st.sum
            total.max = max(total.max, st.max)
        out: dict[str, Any] = {}
        for name, st in [("all", total), *self.stats.items()]:
            out[name] = {
                "requests": st.count + st.rejected,
                "rejected_503": st.rejected,
                "p50": st.quantile(0.50),
                "p95": st.quantile(0.95),
                "p99": st.quantile(0.99),
                "max": st.max,
                "mean": st.sum / st.count if st.count else 0.0,
            }
        return out
