"""Fleet plots (PNG bytes) from an entry's ``series`` and ``rollouts`` (summary.json), with matplotlib.

Uses the object-oriented API (``matplotlib.figure.Figure`` drawn by the Agg canvas), never pyplot,
so rendering needs no display and keeps no global state. Plots are made for entries with a series
and more than one device, or with a rollout (:func:`wants_plots`).
"""

from __future__ import annotations

import io
import warnings
from typing import Callable

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from eden.reports.model import EntryResult, Series

DPI = 96
WIDTH = 7.6
TEXT_PT = 9.0
"""The smallest text in a plot (ticks, legends, notes). A plot is shown about 630 px wide of its
730 (two per row in a 1400 px window): 9 pt at 96 dpi is 10 px on screen, readable; 7.5 was 8."""
LABEL_PT = 9.5
TITLE_PT = 11.5

STATE_COLORS = {
    "ONLINE": "#2da44e",
    "BOOTING": "#54aeff",
    "PROVISIONED": "#0969da",
    "BASEOS_UPDATING": "#d4a72c",
    "REBOOTING": "#fb8f44",
    "PREPARING_POWEROFF": "#bc4c00",
    "POWERING_OFF": "#953800",
    "POWERED_OFF": "#6e7781",
    "MAINTENANCE_MODE": "#8250df",
    "SUSPECT": "#e16f24",
    "ERROR": "#cf222e",
    "UNREPORTED": "#d0d7de",
}
PALETTE = ["#0969da", "#2da44e", "#d4a72c", "#8250df", "#cf222e", "#1b7c83", "#bf3989", "#6e7781", "#953800", "#54aeff"]

PLOT_TITLES = {
    "states": "Devices per state",
    "versions": "Running base-OS version",
    "rollout": "Rollout progress per wave",
    "controller": "Controller load and latency",
    "rollbacks": "Rollbacks over time",
}


def wants_plots(entry: EntryResult) -> bool:
    """Fleet runs get plots: a series and more than one device, or any rollout."""
    return bool(entry.rollouts) or (bool(entry.series) and entry.devices > 1)


def _time_axis(seconds: list[float]) -> tuple[list[float], str]:
    end = max(seconds) if seconds else 0.0
    if end > 3 * 3600:
        return [s / 3600 for s in seconds], "simulated time (h)"
    if end > 600:
        return [s / 60 for s in seconds], "simulated time (min)"
    return list(seconds), "simulated time (s)"


def _scale(end: float) -> tuple[float, str]:
    if end > 3 * 3600:
        return 3600.0, "simulated time (h)"
    if end > 600:
        return 60.0, "simulated time (min)"
    return 1.0, "simulated time (s)"


def _figure(rows: int = 1, height: float = 2.9) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(WIDTH, height * rows), dpi=DPI)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0].tolist()
    for ax in axes:
        ax.grid(True, color="#eaeef2", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(labelsize=TEXT_PT)
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _legend(ax: Axes, ncol: int = 1) -> None:
    ax.legend(fontsize=TEXT_PT, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=ncol)


def _end(entry: EntryResult, series: Series) -> float:
    t = series.get("t") or [0.0]
    return float(max(t[-1], entry.simulated_seconds or 0.0))


def plot_states(entry: EntryResult) -> bytes | None:
    """Stacked area: devices per reported state over time."""
    series = entry.series or {}
    by_state: dict[str, list[int]] = series.get("by_state") or {}
    t = series.get("t") or []
    if not by_state or len(t) < 2:
        return None
    x, xlabel = _time_axis(t)
    order = sorted(by_state, key=lambda s: (list(STATE_COLORS).index(s) if s in STATE_COLORS else 99, s))
    fig, (ax,) = _figure()
    ax.stackplot(
        x,
        [by_state[s][: len(x)] for s in order],
        labels=order,
        colors=[STATE_COLORS.get(s, PALETTE[i % len(PALETTE)]) for i, s in enumerate(order)],
        step="post",
        linewidth=0,
    )
    powered = series.get("powered") or []
    if len(powered) == len(x):
        ax.step(x, powered, where="post", color="#24292f", linewidth=0.9, linestyle="--", label="powered")
    return _finish_devices_plot(fig, ax, PLOT_TITLES["states"], xlabel, x)


def _finish_devices_plot(fig: Figure, ax: Axes, title: str, xlabel: str, x: list[float]) -> bytes:
    """Common frame of the devices-over-time plots; returns the PNG."""
    ax.set_title(title, fontsize=TITLE_PT, loc="left")
    ax.set_ylabel("devices", fontsize=LABEL_PT)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(0, None)
    _legend(ax)
    return _png(fig)


def plot_versions(entry: EntryResult) -> bytes | None:
    """Stacked area: devices per running base-OS version over time."""
    series = entry.series or {}
    by_version: dict[str, list[int]] = series.get("by_version") or {}
    t = series.get("t") or []
    if not by_version or len(t) < 2:
        return None
    x, xlabel = _time_axis(t)
    order = sorted(by_version, key=lambda v: (v == "?", v))
    colors = ["#d0d7de" if v == "?" else PALETTE[i % len(PALETTE)] for i, v in enumerate(order)]
    fig, (ax,) = _figure()
    ax.stackplot(x, [by_version[v][: len(x)] for v in order], labels=order, colors=colors, step="post", linewidth=0)
    return _finish_devices_plot(fig, ax, PLOT_TITLES["versions"], xlabel, x)


def plot_rollout(entry: EntryResult) -> bytes | None:
    """Each wave as a bar from its start to its stop (succeeded / failed counts), and the devices
    on the rollout's version over time."""
    rollouts = [r for r in entry.rollouts if r.get("waves")]
    if not rollouts:
        return None
    series = entry.series or {}
    end = _end(entry, series)
    div, xlabel = _scale(end)
    fig, (ax, ax2) = _figure(2, 2.5)
    labels: list[str] = []
    y = 0
    for r in rollouts:
        for w in r["waves"]:
            start = float(w.get("start") or 0.0)
            stop = w.get("stop")
            stop_f = float(stop) if stop is not None else end
            ok, bad = int(w.get("succeeded") or 0), int(w.get("failed") or 0)
            timed_out = int(w.get("timed_out") or 0)
            outcome = str(w.get("outcome") or ("running" if stop is None else "?"))
            color = {"passed": "#2da44e", "failed": "#cf222e", "paused": "#d4a72c"}.get(outcome, "#8c959f")
            ax.barh(y, (stop_f - start) / div, left=start / div, height=0.6, color=color, alpha=0.9)
            text = f"{ok} ok, {bad} failed" + (f", {timed_out} timed out" if timed_out else "") + f"  ({outcome})"
            ax.annotate(text, (stop_f / div, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=TEXT_PT)
            prefix = f"{r.get('image', '')} " if len(rollouts) > 1 else ""
            labels.append(f"{prefix}wave {int(w.get('wave', 0)) + 1} ({int(w.get('devices') or 0)} dev)")
            y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=TEXT_PT)
    ax.invert_yaxis()
    ax.set_title(PLOT_TITLES["rollout"], fontsize=TITLE_PT, loc="left")
    t = series.get("t") or []
    by_version = series.get("by_version") or {}
    for i, r in enumerate(rollouts):
        col = by_version.get(str(r.get("version")))
        if col and t:
            ax2.step([s / div for s in t], col[: len(t)], where="post", color=PALETTE[i % len(PALETTE)], label=f"on {r.get('version')}")
        for w in r["waves"]:
            ax2.axvline(float(w.get("start") or 0.0) / div, color="#8c959f", linewidth=0.7, linestyle=":")
    total = max((int(r.get("devices") or 0) for r in rollouts), default=0)
    if total:
        ax2.axhline(total, color="#24292f", linewidth=0.8, linestyle="--", label=f"target ({total})")
    ax2.set_ylabel("devices", fontsize=LABEL_PT)
    ax2.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax2.set_ylim(0, None)
    ax2.set_xlim(0, end / div)
    _legend(ax2)
    return _png(fig)


def plot_controller(entry: EntryResult) -> bytes | None:
    """Controller requests per minute (and 503 rejections), and mean / max latency."""
    ctrl = (entry.series or {}).get("controller") or {}
    requests = ctrl.get("requests") or []
    if len(requests) < 2:
        return None
    step = float(ctrl.get("step") or 60.0)
    per_min = 60.0 / step
    div, xlabel = _scale(len(requests) * step)
    x = [(i * step) / div for i in range(len(requests))]
    fig, (ax, ax2) = _figure(2, 2.3)
    ax.step(x, [r * per_min for r in requests], where="post", color="#0969da", linewidth=1.1, label="requests / min")
    rejected = ctrl.get("rejected") or []
    if any(rejected):
        ax.step(x, [r * per_min for r in rejected[: len(x)]], where="post", color="#cf222e", linewidth=1.1, label="503 / min")
    logs = ctrl.get("logs_requests") or []
    if any(logs):  # newlogs uploads: their share of the load, and the flood after an outage (§1)
        ax.step(x[: len(logs)], [r * per_min for r in logs[: len(x)]], where="post", color="#9a6700", linewidth=0.9, label="log uploads / min")
    ax.set_title(PLOT_TITLES["controller"], fontsize=TITLE_PT, loc="left")
    ax.set_ylabel("per minute", fontsize=LABEL_PT)
    ax.set_ylim(0, None)
    _legend(ax)
    lat_sum = ctrl.get("latency_sum") or []
    lat_max = ctrl.get("latency_max") or []
    mean_ms = [(s / r * 1000.0) if r else float("nan") for s, r in zip(lat_sum, requests)]
    ax2.plot(x[: len(mean_ms)], mean_ms, color="#1b7c83", linewidth=1.1, label="mean latency")
    if lat_max:
        ax2.plot(x[: len(lat_max)], [m * 1000.0 if m else float("nan") for m in lat_max], color="#bf3989", linewidth=0.9, label="max latency")
    ax2.set_ylabel("latency (ms)", fontsize=LABEL_PT)
    ax2.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax2.set_ylim(0, None)
    ax2.set_xlim(0, x[-1])
    _legend(ax2)
    return _png(fig)


def plot_rollbacks(entry: EntryResult) -> bytes | None:
    """Rollbacks (FALLBACK / VAULT_FAILED boots) per interval, with the running total."""
    series = entry.series or {}
    if "rollbacks" not in series:
        return None
    times = [float(t) for t in series.get("rollbacks") or []]
    if not times and not entry.rollouts:
        return None
    end = max(_end(entry, series), max(times, default=0.0))
    div, xlabel = _scale(end)
    bin_s = max(float(series.get("step") or 60.0), end / 48.0)
    nbins = max(1, int(end // bin_s) + 1)
    counts = [0] * nbins
    for t in times:
        counts[min(nbins - 1, int(t // bin_s))] += 1
    fig, (ax,) = _figure(1, 2.5)
    ax.bar([i * bin_s / div for i in range(nbins)], counts, width=bin_s / div, align="edge", color="#cf222e", alpha=0.8, label=f"rollbacks per {bin_s / 60:.0f} min")
    ax.set_ylabel("rollbacks", fontsize=LABEL_PT)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_xlim(0, end / div)
    ax.set_ylim(0, max(counts + [1]) * 1.15)
    ax.set_title(f"{PLOT_TITLES['rollbacks']} (total {len(times)})", fontsize=TITLE_PT, loc="left")
    if times:
        twin = ax.twinx()
        cum = sorted(times)
        twin.step([0.0] + [t / div for t in cum] + [end / div], [0] + list(range(1, len(cum) + 1)) + [len(cum)], where="post", color="#24292f", linewidth=1.0)
        twin.set_ylim(0, len(cum) * 1.15)
        twin.set_ylabel("running total", fontsize=LABEL_PT)
        twin.tick_params(labelsize=TEXT_PT)
        twin.spines["top"].set_visible(False)
    if not times:
        ax.text(0.5, 0.5, "no rollbacks", transform=ax.transAxes, ha="center", va="center", fontsize=TITLE_PT, color="#57606a")
    ax.legend(fontsize=TEXT_PT, loc="upper left", frameon=False)
    return _png(fig)


PLOTTERS: dict[str, Callable[[EntryResult], bytes | None]] = {
    "states": plot_states,
    "versions": plot_versions,
    "rollout": plot_rollout,
    "controller": plot_controller,
    "rollbacks": plot_rollbacks,
}


def entry_plots(entry: EntryResult) -> dict[str, bytes]:
    """All plots for one entry (key -> PNG bytes; see ``PLOT_TITLES``); empty unless :func:`wants_plots`."""
    if not wants_plots(entry):
        return {}
    out: dict[str, bytes] = {}
    for key, plotter in PLOTTERS.items():
        try:
            png = plotter(entry)
        except Exception as exc:  # a plot must never cost the whole report
            warnings.warn(f"eden: plot {key!r} of {entry.id} failed: {exc!r}", RuntimeWarning, stacklevel=2)
            continue
        if png:
            out[key] = png
    return out
