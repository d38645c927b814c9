"""SimPy driver for the EVE node machines: simulated time, simulated network, one controller.

Two kinds of work share one clock:

* **Transitions** (boots, onboarding, updates, attestation, faults) are handled one node at a time:
  the engine calls the node's machine, then carries out the actions it returns (requests to the
  controller model, timers, resets, timeline notes). Cost grows with state changes.
* **Steady-state traffic** (config polls answered 304, metrics, forced device info, port tests) is
  what dominates a large fleet. The four periodic timers live in numpy arrays; every ``bucket``
  seconds the engine takes the due entries. For nodes whose machine says it is quiescent (and
  whose network, controller and config are unchanged) the requests are answered in bulk through
  the controller's queue, and the next deadlines are drawn in one vectorised call. Everything else
  falls through to the node's machine. Cost then grows with nodes x time only through numpy.

A run is a pure function of the scenario and the seed: every random draw comes from a stream
spawned from the seed for one purpose, and all iteration orders are fixed.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import simpy

from simulator.capacity import RTT
from simulator.controller import ControllerModel
from eve.logs import DEFAULT_INTERVAL, SCHEDULE, files_made, jittered, plain_at
from eve.controller import SETTLED_STATUS
from eve.driving import TimerBook, dispatch
from eve.enums import BootReason
from eve.node import Node, Send
from eve.vocab import PERIODIC, TimerName

ARRAY_TIMERS: tuple[str, ...] = tuple(PERIODIC)
_REQUEST_KIND: dict[str, str] = {timer: p.request for timer, p in PERIODIC.items()}
_BULK_STATUS: dict[str, int] = {timer: SETTLED_STATUS[p.request] for timer, p in PERIODIC.items()}  # answered in bulk: settled
_INTERVAL_ITEM: dict[str, str] = {timer: p.interval_item for timer, p in PERIODIC.items() if p.interval_item is not None}
_JITTER: dict[str, tuple[float, float]] = {timer: p.jitter for timer, p in PERIODIC.items()}

NoteSink = Callable[[float, int, str, dict[str, Any]], None]


class Engine:
    def __init__(
        self,
        env: simpy.Environment,
        nodes: list[Node],
        controller: ControllerModel,
        *,
        rng: np.random.Generator,
        bucket: float = 1.0,
        on_note: NoteSink | None = None,
    ) -> None:
        self.env = env
        self.nodes = nodes
        self.ctrl = controller
        self.rng = rng
        self.bucket = bucket
        self.on_note = on_note
        n = len(nodes)
        self.next = {k: np.full(n, np.inf) for k in ARRAY_TIMERS}
        self.arr_tok = {k: np.zeros(n, dtype=np.int64) for k in ARRAY_TIMERS}
        self.interval = {k: np.full(n, 60.0) for k in ARRAY_TIMERS}
        self.quiet = np.zeros(n, dtype=bool)
        self._items_seen = [-1] * n
        self.net_ok = np.ones(n, dtype=bool)
        self.node_ver = np.full(n, -1, dtype=np.int64)
        self.last_ok = np.full(n, -np.inf)
        self.books = [TimerBook() for _ in range(n)]  # the driver contract of eve.driving, per node
        self._sinks = [_NodeActions(self, i) for i in range(n)]
        self.port_down: list[set[str]] = [set() for _ in range(n)]
        # log upload (eve/logs.py): the node's files and schedule, and the files the bulk
        # path sent since the node was last called (written back by Node.note_log_uploads)
        self.log_base = np.zeros(n, dtype=np.int64)
        self.log_epoch = np.full(n, np.inf)
        self.log_done = np.zeros(n, dtype=np.int64)
        self.log_until = np.full(n, -np.inf)
        self.log_bulk = np.zeros(n, dtype=np.int64)
        self.log_left = np.zeros(n, dtype=np.int64)
        self.log_sched = np.full(n, np.inf)  # next schedule evaluation (LogUploader.sched_at)
        self.log_failed = np.zeros(n, dtype=bool)
        self.log_backoff = np.zeros(n, dtype=bool)
        self.log_429 = np.full(n, -np.inf)
        self.log_evald = np.zeros(n, dtype=bool)  # a bulk evaluation not yet written back
        self.events = 0
        self.bulk_requests = 0
        env.process(self._bulk_loop())

    # --------------------------------------------------------------------------- node calls --
    def call(self, i: int, method: str, *args: Any) -> None:
        """Call a node input (power_on, tamper, ...) at the current time and apply its actions."""
        self._call(i, getattr(self.nodes[i], method), *args, self.env.now)

    def _call(self, i: int, fn: Callable[..., list[Any]], *args: Any) -> None:
        node = self.nodes[i]
        if self.last_ok[i] > node.zedagent.last_contact:
            node.note_contact(float(self.last_ok[i]))
        if self.log_bulk[i] or self.log_evald[i]:
            if self.log_evald[i]:
                node.note_log_uploads(int(self.log_bulk[i]), int(self.log_left[i]), int(self.interval["logs"][i]), float(self.log_sched[i]))
            else:
                node.note_log_uploads(int(self.log_bulk[i]), int(self.log_left[i]))
            self.log_bulk[i] = 0
            self.log_evald[i] = False
        self.events += 1
        actions = fn(*args)
        sink = self._sinks[i]
        sink.now = args[-1]
        dispatch(actions, sink)
        self._refresh(i)

    def _refresh(self, i: int) -> None:
        node = self.nodes[i]
        self.quiet[i] = node.quiescent()
        if not node.zedagent.last_hash:
            self.node_ver[i] = -1  # it forgot its config hash (a boot, leaving maintenance): its next poll is a full one
        self.last_ok[i] = node.zedagent.last_contact
        down = self.port_down[i]
        ports = node.ports()
        self.net_ok[i] = any(p not in down for p in ports) if down else bool(ports)
        if self._items_seen[i] != node.items_version:
            self._items_seen[i] = node.items_version
            items = node.persist.items
            for k, key in _INTERVAL_ITEM.items():
                self.interval[k][i] = float(items.get(key))  # type: ignore[arg-type]
        up = node.loguploader.uploader
        if up is None:
            self.log_until[i] = -np.inf
        else:
            self.interval["logs"][i] = up.interval
            self.log_until[i] = up.next_event()
            self.log_base[i] = up.persist.made
            self.log_epoch[i] = up.epoch
            self.log_done[i] = up.persist.done
            self.log_sched[i] = up.sched_at
            self.log_failed[i] = up.failed_to_send
            self.log_backoff[i] = up.backoff_until is not None
            self.log_429[i] = up.last_429
            self.log_left[i] = up.left

    # ------------------------------------------------------------------------------- timers --
    def _schedule(self, i: int, name: TimerName, at: float) -> None:
        book = self.books[i]
        tok, gen = book.set(name), book.gen
        ev = self.env.timeout(max(0.0, at - self.env.now))
        ev.callbacks.append(lambda _e: self._fire(i, name, tok, gen, at))

    def _fire(self, i: int, name: TimerName, tok: int, gen: int, at: float) -> None:
        if self.books[i].take(name, tok, gen):
            self._call(i, self.nodes[i].on_timer, name, max(at, self.env.now))

    # ------------------------------------------------------------------------------ network --
    def _send(self, i: int, req: Send, t: float) -> None:
        """One request through the node's ports (§1, :mod:`eve.send`). A port that is down is a dead
        path: the connect times out. While another port works, requests go that way (nim marks the
        failing port and ``SendOnAllIntf`` skips it; the model skips it from the start)."""
        down = self.port_down[i]
        up = sum(1 for p in req.ports if p not in down) if down else len(req.ports)
        mode = self.ctrl.mode
        node = self.nodes[i]
        limits = node.send_timeouts(req.kind)
        if not req.ports:
            status, body, latency = 0, {"error": "network"}, 0.0  # no management port: an error at once
        elif not up:
            status, body, latency = 0, {"error": "timeout"}, limits.failing(len(req.ports), "dial")
        elif mode == "down":
            status, body, latency = 0, {"error": "refused"}, RTT  # ECONNREFUSED: remote temporary (§4)
        elif mode == "hang":
            status, body, latency = 0, {"error": "timeout"}, limits.failing(up, "hung")
        else:
            status, body, latency = self.ctrl.handle(i, req.kind, req.body, t, node.persist.uuid)
            if latency >= limits.per_port:  # answered too late: the client gave up on the port
                status, body, latency = 0, {"error": "timeout"}, limits.per_port
        gen = self.books[i].gen
        ev = self.env.timeout(max(0.0, t + latency - self.env.now))
        ev.callbacks.append(lambda _e: self._deliver(i, gen, req, status, body, t + latency))

    def _deliver(self, i: int, gen: int, req: Send, status: int, body: dict[str, Any], at: float) -> None:
        if self.books[i].gen != gen:
            return
        self._call(i, self.nodes[i].on_response, req.rid, status, body, max(at, self.env.now))
        if req.kind == "config" and status in (200, 304):
            node = self.nodes[i]
            cfg = self.ctrl.config_for(i)
            self.node_ver[i] = self.ctrl.ctrl_ver[i] if node.zedagent.last_hash == cfg["hash"] else -1

    def set_ports(self, i: int, ports: list[str] | None, up: bool) -> None:
        names = [p.name for p in self.nodes[i].p.ports] if ports is None else ports
        if up:
            self.port_down[i].difference_update(names)
        else:
            self.port_down[i].update(names)
        # The node learns its links (a download depends on them, §4); _call refreshes the arrays.
        self._call(i, self.nodes[i].links, frozenset(self.port_down[i]), self.env.now)

    # --------------------------------------------------------------------------------- bulk --
    def _bulk_loop(self) -> Any:
        """Every ``bucket`` seconds: take the periodic timers due in the next window. Slow ones are
        scheduled at their exact times; bulk ones are answered at once through the controller's
        queue (which remembers the window, so single requests queue only behind earlier ones)."""
        env = self.env
        while True:
            horizon = env.now + self.bucket
            batches = [b for kind in ARRAY_TIMERS if (b := self._take(kind, horizon)) is not None]
            if batches:
                self._serve_bulk(batches)
            yield env.timeout(self.bucket)

    def _fast_mask(self, kind: str, idx: np.ndarray, times: np.ndarray) -> np.ndarray:
        ctrl = self.ctrl
        if ctrl.mode != "up":
            return np.zeros(idx.size, dtype=bool)
        fast = self.quiet[idx] & self.net_ok[idx] & ~ctrl.needs_slow[idx]
        if kind == "config":
            fast &= self.node_ver[idx] == ctrl.ctrl_ver[idx]
        elif kind == "logs":
            # schedule evaluations run here only in the plain case (one due, see _logs_schedule)
            ok = times < self.log_until[idx]
            sched = self.log_sched[idx]
            plain = (times >= sched) & (times < sched + SCHEDULE) & ~self.log_backoff[idx]
            plain &= plain_at(self.log_failed[idx], self.log_backoff[idx], self.log_429[idx], self.log_left[idx], sched)
            fast &= ok | plain
        return fast

    def _take(self, kind: str, horizon: float) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
        arr = self.next[kind]
        due = np.flatnonzero(arr < horizon)
        if due.size == 0:
            return None
        times = arr[due]
        order = np.argsort(times, kind="stable")
        due, times = due[order], times[order]
        arr[due] = np.inf
        toks = self.arr_tok[kind][due]
        fast = self._fast_mask(kind, due, times)
        books = self.books
        for i, t, tok in zip(due[~fast].tolist(), times[~fast].tolist(), toks[~fast].tolist()):
            gen = books[i].gen
            ev = self.env.timeout(max(0.0, t - self.env.now))
            ev.callbacks.append(lambda _e, i=i, t=t, tok=tok, gen=gen: self._fire_array(i, kind, tok, gen, t))
        if not fast.any():
            return None
        return kind, due[fast], times[fast], toks[fast]

    def _fire_array(self, i: int, kind: str, tok: int, gen: int, t: float) -> None:
        if self.books[i].gen != gen or self.arr_tok[kind][i] != tok:
            return  # moved or cancelled since it was taken
        self._call(i, self.nodes[i].on_timer, kind, max(t, self.env.now))

    def _logs_schedule(self, idx: np.ndarray, t: np.ndarray) -> None:
        """The plain schedule evaluations due at these bulk fires (``logs.plain_at``): a new
        jittered 90 s interval and the next evaluation 1800 s on, written back to the node later."""
        due = t >= self.log_sched[idx]
        if due.any():
            di = idx[due]
            self.interval["logs"][di] = jittered(np.full(di.size, DEFAULT_INTERVAL), self.rng)
            self.log_sched[di] += SCHEDULE
            self.log_until[di] = self.log_sched[di]
            self.log_evald[di] = True

    def _logs_without_file(self, idx: np.ndarray, t: np.ndarray, fast: np.ndarray) -> np.ndarray:
        """Bulk upload fires that find no log file send nothing: re-arm them here (LogUploaderAgent.on_timer)
        and return the fast ones that do send."""
        has = files_made(self.log_base[idx], self.log_epoch[idx], t) > self.log_done[idx]
        empty = fast & ~has
        if empty.any():
            ei = idx[empty]
            self.next["logs"][ei] = t[empty] + self.interval["logs"][ei]
            self.log_left[ei] = 0
        return fast & has

    def _serve_bulk(self, batches: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Answer a window's worth of quiescent nodes' periodic requests in one go.

        All kinds go through the controller's queue together, in arrival order."""
        ctrl = self.ctrl
        kinds, idxs, times = [], [], []
        slow: list[tuple[float, int, str]] = []
        for n, (kind, idx, t, toks) in enumerate(batches):
            live = (self.arr_tok[kind][idx] == toks) & np.isinf(self.next[kind][idx])
            idx, t = idx[live], t[live]
            fast = self._fast_mask(kind, idx, t)
            slow.extend(zip(t[~fast].tolist(), idx[~fast].tolist(), [kind] * int((~fast).sum())))
            if kind == "logs":
                self._logs_schedule(idx[fast], t[fast])
                fast = self._logs_without_file(idx, t, fast)
            idxs.append(idx[fast])
            times.append(t[fast])
            kinds.append(np.full(int(fast.sum()), n, dtype=np.int8))
        all_t = np.concatenate(times)
        if all_t.size:
            all_i = np.concatenate(idxs)
            all_k = np.concatenate(kinds)
            order = np.argsort(all_t, kind="stable")
            all_t, all_i, all_k = all_t[order], all_i[order], all_k[order]
            ok, lat = ctrl.admit_batch(all_t)
            ctrl.last_seen[all_i[ok]] = np.maximum(ctrl.last_seen[all_i[ok]], all_t[ok])
            for n, (kind, *_rest) in enumerate(batches):
                sel = all_k == n
                k_ok = ok[sel]
                acc_i, acc_t, acc_lat = all_i[sel][k_ok], all_t[sel][k_ok], lat[sel][k_ok]
                if acc_t.size:
                    ctrl.record_batch(_REQUEST_KIND[kind], acc_t, acc_lat, _BULK_STATUS[kind])
                    self.bulk_requests += int(acc_t.size)
                    lo, hi = _JITTER[kind]
                    factor = self.rng.uniform(lo, hi, acc_t.size) if hi > lo else np.full(acc_t.size, lo)
                    self.next[kind][acc_i] = acc_t + factor * self.interval[kind][acc_i]
                    if kind == "logs":  # sent (201): the timer is re-armed after the answer
                        self.next[kind][acc_i] += acc_lat
                        self.log_left[acc_i] = files_made(self.log_base[acc_i], self.log_epoch[acc_i], acc_t) - self.log_done[acc_i] - 1
                        self.log_done[acc_i] += 1
                        self.log_bulk[acc_i] += 1
                    if kind == "config":
                        self.last_ok[acc_i] = np.maximum(self.last_ok[acc_i], acc_t + acc_lat)
                rej = ~k_ok
                if rej.any():
                    slow.extend(zip(all_t[sel][rej].tolist(), all_i[sel][rej].tolist(), [kind] * int(rej.sum())))
        if slow:
            slow.sort()
            now = self.env.now
            for t, i, kind in slow:
                self._call(i, self.nodes[i].on_timer, kind, max(t, now))


class _NodeActions:
    """The :class:`eve.driving.ActionSink` of node ``i``: its periodic timers go into the engine's
    arrays (same rules, one token per array slot), every other timer onto the SimPy clock."""

    __slots__ = ("engine", "i", "now")

    def __init__(self, engine: Engine, i: int) -> None:
        self.engine = engine
        self.i = i
        self.now = 0.0

    def send(self, req: Send) -> None:
        self.engine._send(self.i, req, self.now)

    def set_timer(self, name: TimerName, at: float) -> None:
        e = self.engine
        arr = e.next.get(name)  # type: ignore[arg-type]
        if arr is not None:
            arr[self.i] = at
            e.arr_tok[name][self.i] += 1  # type: ignore[index]
        else:
            e._schedule(self.i, name, at)

    def note(self, what: str, data: Any) -> None:
        if self.engine.on_note is not None:
            self.engine.on_note(self.now, self.i, what, data)

    def cancel_all(self) -> None:
        e, i = self.engine, self.i
        e.books[i].cancel_all()
        e.last_ok[i] = -np.inf
        for k, arr in e.next.items():
            arr[i] = np.inf
            e.arr_tok[k][i] += 1

    def reset(self, reason: BootReason | None) -> None:
        e, i = self.engine, self.i
        ev = e.env.timeout(0)
        ev.callbacks.append(lambda _e: e._call(i, e.nodes[i].power_on, e.env.now))
