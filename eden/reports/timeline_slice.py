"""Cut the slice of a run's event timeline around a failed expectation (an Allure attachment).

The slice holds the events of the failing devices (``detail.failing`` keys; every device when the
expectation names none) and the harness events, from ``WINDOW`` seconds before the failure time to
the failure time. The failure time is the expectation's ``met_at``, else its ``deadline``, else the
end of the run. Both timeline forms are read: ``events.jsonl`` and ``events.npz`` +
``events.details.jsonl.gz`` (large fleets; the columnar form has no ``source``, so device-less
events count as harness events there).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from collections import deque
from typing import Iterator, Mapping

WINDOW = 120.0
"""Seconds of timeline before the failure time."""
CAP = 300
"""At most this many event lines in one slice (the ones closest to the failure are kept)."""
CONTEXT = 15
"""When the window is sparse, up to this many earlier events of the same devices are shown first."""

CONTEXT_LOOKBACK = 3600.0
"""How far back (seconds) the context events are looked for."""

_BASE_KEYS = ("t", "source", "device", "what")

TimelineEvent = dict[str, object]
"""One timeline event as read back: t, source, device, what, then the event's own details (any JSON)."""


def event_time(event: TimelineEvent) -> float:
    """The event's ``t`` (0 when it has none)."""
    t = event.get("t", 0.0)
    return float(t) if isinstance(t, (int, float, str)) else 0.0


def failure_time(expectation: Mapping[str, object], end: float | None) -> float:
    """``met_at``, else ``deadline``, else ``end`` (else 0)."""
    for key in ("met_at", "deadline"):
        value = expectation.get(key)
        if isinstance(value, (int, float, str)):
            return float(value)
    return float(end or 0.0)


def _detail(expectation: Mapping[str, object]) -> Mapping[str, object]:
    """The expectation's ``detail`` block (empty when it has none)."""
    detail = expectation.get("detail")
    return detail if isinstance(detail, dict) else {}


def failing_devices(expectation: Mapping[str, object]) -> set[str] | None:
    """The devices named in ``detail.failing``; None means every device."""
    failing = _detail(expectation).get("failing")
    if isinstance(failing, dict) and failing:
        return set(failing)
    if isinstance(failing, list) and failing:
        return {str(d) for d in failing}
    return None


def events_file(run_dir: Path) -> Path | None:
    """The run's timeline file (``events.jsonl`` or ``events.npz``), if any."""
    for name in ("events.jsonl", "events.npz"):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def iter_events(
    run_dir: Path,
    t0: float = float("-inf"),
    t1: float = float("inf"),
    devices: set[str] | None = None,
) -> Iterator[TimelineEvent]:
    """The run's events with ``t0 <= t <= t1`` as dicts (t, source, device, what, details...).

    With ``devices``, only their events and the harness (device-less) events are returned."""
    path = events_file(run_dir)
    if path is None:
        return
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                event: TimelineEvent = json.loads(line)
                t = event_time(event)
                if t < t0:
                    continue
                if t > t1:
                    break  # events are written in time order
                if _relevant(event, devices):
                    yield event
        return
    yield from _read_columnar(path, t0, t1, devices)[0]


def window_events(
    run_dir: Path, t0: float, t1: float, devices: set[str] | None, cap: int
) -> tuple[list[TimelineEvent], int]:
    """The last ``cap`` relevant events in ``[t0, t1]`` and how many there are in all."""
    path = events_file(run_dir)
    if path is None:
        return [], 0
    if path.suffix == ".npz":
        return _read_columnar(path, t0, t1, devices, last=cap)
    keep: deque[TimelineEvent] = deque(maxlen=cap)
    total = 0
    for event in iter_events(run_dir, t0, t1, devices):
        keep.append(event)
        total += 1
    return list(keep), total


def _read_columnar(
    path: Path, t0: float, t1: float, wanted_devices: set[str] | None, last: int | None = None
) -> tuple[list[TimelineEvent], int]:
    """Events of the columnar form in ``[t0, t1]`` (only the last ``last`` of them) and their total."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        t = data["t"]
        dev = data["device"]
        code = data["code"]
        devices = [str(d) for d in data["devices"]]
        kinds = [str(k) for k in data["kinds"]]
    mask = (t >= t0) & (t <= t1)
    if wanted_devices is not None:
        idx = [i for i, d in enumerate(devices) if d in wanted_devices]
        mask &= (dev < 0) | np.isin(dev, np.array(idx, dtype=dev.dtype))
    picked = np.flatnonzero(mask)
    total = int(picked.size)
    if last is not None:
        picked = picked[-last:] if last > 0 else picked[:0]
    if picked.size == 0:
        return [], total
    wanted = set(picked.tolist())
    final = int(picked[-1])
    details: dict[int, TimelineEvent] = {}
    details_path = path.with_name(path.stem + ".details.jsonl.gz")
    if details_path.is_file():
        with gzip.open(details_path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i in wanted:
                    details[i] = json.loads(line) if line.strip() else {}
                if i >= final:
                    break
    out: list[TimelineEvent] = []
    for i in picked.tolist():
        d = int(dev[i])
        device = devices[d] if d >= 0 else None
        out.append(
            {
                "t": float(t[i]),
                "source": "harness" if device is None else "",
                "device": device,
                "what": kinds[int(code[i])],
                **details.get(i, {}),
            }
        )
    return out, total


def format_event(event: TimelineEvent) -> str:
    """One readable line: time, source, device, event, then the details as key=value."""
    extra = " ".join(
        f"{k}={json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}"
        for k, v in sorted(event.items())
        if k not in _BASE_KEYS
    )
    return (
        f"{event_time(event):>12.3f}s  {event.get('source') or '-':<10} "
        f"{event.get('device') or '-':<16} {event.get('what', ''):<22} {extra}"
    ).rstrip()


def _relevant(event: TimelineEvent, devices: set[str] | None) -> bool:
    if devices is None:
        return True
    if event.get("source") == "harness" or event.get("device") is None:
        return True
    return event.get("device") in devices


def timeline_slice(
    run_dir: Path,
    expectation: Mapping[str, object],
    *,
    end: float | None = None,
    window: float = WINDOW,
    cap: int = CAP,
) -> str:
    """The text slice of the timeline around one failed expectation (see the module docstring)."""
    t_fail = failure_time(expectation, end)
    t_start = max(0.0, t_fail - window)
    devices = failing_devices(expectation)
    header = [
        f"expectation: {expectation.get('name', '?')} ({expectation.get('where', '?')}, line {expectation.get('line', '?')})",
        f"status: {expectation.get('status', '?')}; why: {_detail(expectation).get('why', '-')}",
        f"observed: {json.dumps(expectation.get('observed'), sort_keys=True, default=str)}",
        f"devices: {', '.join(sorted(devices)) if devices else 'all'} (+ harness events)",
        f"window: {t_start:.3f}s .. {t_fail:.3f}s (run clock)",
    ]
    if events_file(run_dir) is None:
        return "\n".join(header + ["", "(no event timeline was recorded for this run)"]) + "\n"
    inside, total = window_events(run_dir, t_start, t_fail, devices, cap)
    before: list[TimelineEvent] = []
    if len(inside) < CONTEXT and t_start > 0:
        for event in iter_events(run_dir, max(0.0, t_start - CONTEXT_LOOKBACK), t_start, devices):
            if event_time(event) < t_start:
                before.append(event)
        before = before[-CONTEXT:]
    lines = header + [""]
    if len(inside) < CONTEXT and before:
        lines.append(f"-- {len(before)} earlier event(s) of the same devices, for context --")
        lines += [format_event(e) for e in before]
        lines.append("-- window --")
    if total > len(inside):
        lines.append(f"... {total - len(inside)} earlier event(s) in the window omitted (cap {cap}) ...")
    lines += [format_event(e) for e in inside]
    if not inside:
        lines.append("(no events in the window)")
    return "\n".join(lines) + "\n"


def tail_slice(run_dir: Path, end: float | None, *, window: float = WINDOW, cap: int = CAP) -> str:
    """The last ``window`` seconds of the timeline (for broken runs: what happened before the error)."""
    return timeline_slice(
        run_dir,
        {"name": "end of the run", "where": "-", "line": "-", "status": "broken", "observed": None},
        end=end,
        window=window,
        cap=cap,
    )
