"""One event timeline per run: device notes, harness actions, console lines, controller messages.

Reports are cut from it (per-device logs, the slice around a failed expectation, timings).
Events are appended in time order by the run's single clock.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np


class Event(NamedTuple):
    t: float
    source: str  # device | harness | console | qmp | controller
    device: str | None
    what: str
    data: dict[str, Any]


class Timeline:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, t: float, source: str, device: str | None, what: str, data: dict[str, Any]) -> None:
        self.events.append(Event(t, source, device, what, data))

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def window(self, t0: float, t1: float, devices: set[str] | None = None, limit: int = 500) -> list[Event]:
        out = []
        for e in self.events:
            if t0 <= e.t <= t1 and (devices is None or e.device is None or e.device in devices):
                out.append(e)
                if len(out) >= limit:
                    break
        return out

    def write_jsonl(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for e in self.events:
                fh.write(json.dumps({"t": round(e.t, 6), "source": e.source, "device": e.device, "what": e.what, **_clean(e.data)}, sort_keys=True))
                fh.write("\n")

    def write_columnar(self, path: Path) -> None:
        """Compact form for large fleets: numpy arrays (time, device index, event code) in an .npz,
        with the device and event vocabularies, plus the event details as gzipped JSON lines."""
        devices = sorted({e.device for e in self.events if e.device is not None})
        dev_index = {d: i for i, d in enumerate(devices)}
        kinds = sorted({e.what for e in self.events})
        kind_index = {k: i for i, k in enumerate(kinds)}
        t = np.fromiter((e.t for e in self.events), dtype=np.float64, count=len(self.events))
        dev = np.fromiter((dev_index.get(e.device, -1) if e.device else -1 for e in self.events), dtype=np.int32, count=len(self.events))
        code = np.fromiter((kind_index[e.what] for e in self.events), dtype=np.int16, count=len(self.events))
        np.savez_compressed(path, t=t, device=dev, code=code, devices=np.array(devices), kinds=np.array(kinds))
        with gzip.open(path.with_suffix(".details.jsonl.gz"), "wt", encoding="utf-8") as fh:
            for e in self.events:
                if e.data:
                    fh.write(json.dumps(_clean(e.data), sort_keys=True) + "\n")
                else:
                    fh.write("{}\n")


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in data.items()}
