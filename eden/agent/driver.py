"""``AgentDriver``: one EVE node model on the wall clock, driven by asyncio.

It keeps the driver contract of :mod:`eve.driving` (the simulator engine keeps the same one in
simulated time), with real time and a real network:

* node clock = ``time.time()``; a timer is a ``loop.call_at`` checked against the node's
  :class:`~eve.driving.TimerBook` (setting a name again moves it; ``CancelAll`` starts a new
  generation, so that responses to requests sent before it are dropped);
* ``Send`` becomes a task through the :class:`~eden.agent.transport.Transport`; its answer goes to
  ``on_response`` at its arrival time, unless the generation changed meanwhile;
* ``Note`` becomes one JSON event line; ``Reset`` persists the state and ends this boot: the
  process exits (:data:`EXIT_REBOOT`) and is started again, a real process restart.

No globals: many drivers can share one event loop and one transport (``eden emulate``).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Mapping, TextIO

import numpy as np

from eden.agent.faults import FAULT_POLL, FaultInbox, node_input
from eden.agent.objects import ObjectReports, hardware, storage_bytes
from eden.agent.platform import NoPlatform, Platform
from eden.agent.spec import AgentSpec
from eden.agent.state import StateDir
from eden.agent.tpm import SoftTpm, Tpm
from eden.agent.transport import DeviceLink, Transport
from eden.wire.codec import CodecError
from eve.driving import TimerBook, dispatch
from eve.enums import BootReason
from eve.node import Action, Node, NodeParams, Send
from eve.send import SendTimeouts
from eve.vocab import TimerName

LINK_POLL = 1.0
"""Seconds between reads of the platform's link state (netlink tells nim at once; 1 s is close)."""
PLATFORM_RETRY = 10.0
"""Seconds before real work behind a timer (a download, a partition write) is tried again."""

CERTS_RETRY = 120.0
"""zedagent's short certs timer while fetches fail (P:cmd/zedagent/handlecertconfig.go ``shortTime``)."""

EXIT_REBOOT = 75
"""``eden agent --once`` exit status when the device reset itself (EX_TEMPFAIL): start it again."""


@dataclass(frozen=True)
class Outcome:
    """How one boot ended: ``reboot`` (the node reset itself; ``reason`` a BootReason name or None
    for a crash) or ``off`` (power removed)."""

    kind: str
    reason: str | None = None


@dataclass
class PortUrls:
    """Controller URL per network port (each may go through its own relay), else ``default``."""

    per_port: dict[str, str] = field(default_factory=dict)
    default: str | None = None

    def for_ports(self, ports: tuple[str, ...]) -> list[str]:
        urls = [self.per_port.get(p, self.default) for p in ports]
        return [u for u in urls if u]


class EventWriter:
    """One JSON line per event, flushed at once (the harness tails these into its timeline)."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self.clock = clock

    def __call__(self, device: str, what: str, data: Mapping[str, Any]) -> None:
        line = {"t": self.clock(), "device": device, "what": what, "data": dict(data)}
        self.stream.write(json.dumps(line, default=str, separators=(",", ":")) + "\n")
        self.stream.flush()


EventSink = Callable[[str, str, Mapping[str, Any]], None]


class AgentDriver:
    def __init__(
        self,
        *,
        spec: AgentSpec,
        params: NodeParams,
        state: StateDir,
        transport: Transport,
        link: DeviceLink,
        urls: PortUrls,
        events: EventSink,
        tpm: Tpm | None = None,
        platform: Platform | None = None,
        startup: dict[str, float] | None = None,
        faults_file: Path | None = None,
    ) -> None:
        self.spec = spec
        self.params = params
        self.state = state
        self.transport = transport
        self.link = link
        self.urls = urls
        self.events = events
        self.tpm = tpm if tpm is not None else SoftTpm()
        self.platform: Platform = platform if platform is not None else NoPlatform()
        self.node: Node | None = None
        self.boots = 0
        self.book = TimerBook()
        self._handles: dict[TimerName, asyncio.TimerHandle] = {}  # so that a moved timer frees the loop
        self._tasks: set[asyncio.Task[None]] = set()
        self._reset: Outcome | None = None
        self._saved: bytes | None = None
        self._done: asyncio.Future[Outcome] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cert_post: asyncio.Event | None = None  # the node's ATTEST_REQ_CERT post in flight or done
        self._certs_task = False
        self._objects = ObjectReports(None)
        # The start-up timings of this process (eden.agent.cli.run_boot), read when agent_start is said.
        self._startup: dict[str, float] = startup if startup is not None else {}
        self.faults_file = faults_file  # the fault inbox (eden/agent/faults.py), None: no faults

    # ---------------------------------------------------------------------------------- lifecycle --
    def start(self) -> None:
        """Load the state (first start: from the spec) and power the device on. Call in the loop."""
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._cert_post = None
        saved = self.state.load()
        boots = saved.boots if saved is not None else 0
        self.boots = boots + 1
        seq = np.random.SeedSequence([self.spec.seed, self.boots])
        node_seed, luck_seed = seq.spawn(2)
        node = Node(self.params, self.spec.image, np.random.default_rng(node_seed), np.random.default_rng(luck_seed))
        if saved is not None:
            node.persist = saved.persist
        elif self.spec.config_items:
            node.persist.items.apply(self.spec.config_items)
        self.node = node
        self._objects = ObjectReports(lambda: hardware(self.params, node, storage_bytes(self.spec)))
        self._emit("agent_start", {"boot": self.boots, "tpm": self.tpm.kind, "first": saved is None,
                                   "platform": self.platform.name, **self._startup})
        self._startup = {}  # a supervised restart in the same process has no start-up of its own
        self.platform.before_power_on(node)
        self._call(node.power_on, time.time(), after=self.platform.after_power_on)
        self.tpm.measured(node.pcrs)
        if self.platform.links_down() is not None:  # the platform tells the links: nim watches them
            self._spawn(self._watch_links(self.book.gen))
        if self.faults_file is not None:
            self._spawn(self._watch_faults(FaultInbox(self.faults_file), self.book.gen))

    async def wait(self) -> Outcome:
        assert self._done is not None, "start() first"
        try:
            return await asyncio.shield(self._done)
        finally:
            for task in list(self._tasks):
                task.cancel()

    def power_off(self) -> None:
        """Power removed (SIGTERM): volatile state lost, the next boot reports POWER_FAIL (§7)."""
        if self.node is None or self._finished:
            return
        self._call(self.node.power_off, time.time())
        self._finish(Outcome("off"), power_lost=None)

    @property
    def _finished(self) -> bool:
        return self._done is None or self._done.done()

    # ------------------------------------------------------------------------------------ actions --
    def _call(self, fn: Callable[..., list[Action]], *args: Any, after: Callable[[Node], None] | None = None) -> None:
        if self._finished:
            return
        try:
            actions = fn(*args)
            assert self.node is not None
            if after is not None:
                after(self.node)
            self.platform.sync(self.node)  # the real boot state follows the model's (a no-op off the image)
            self._reset = None
            dispatch(actions, self)
            if self._reset is not None:
                self._finish(self._reset, power_lost=None)
            else:
                self._save(power_lost=True)  # what a power cut from now on leaves behind
                if self.node.zedagent.running and not self._certs_task:
                    self._certs_task = True
                    self._spawn(self._controller_certs(self.book.gen))
        except Exception as exc:  # a bug in the rules or the state dir: end this boot with it
            if self._done is not None and not self._done.done():
                self._done.set_exception(exc)

    # the ActionSink of eve.driving
    def note(self, what: str, data: Mapping[str, Any]) -> None:
        self._emit(what, data)

    def reset(self, reason: BootReason | None) -> None:
        """The boot ends once every other action of this batch is carried out."""
        self._reset = Outcome("reboot", reason.name if reason is not None else None)

    def _finish(self, outcome: Outcome, *, power_lost: bool | None) -> None:
        self.cancel_all()
        self._save(power_lost=power_lost)
        self._emit("agent_exit", {"outcome": outcome.kind, "reason": outcome.reason})
        assert self._done is not None
        if not self._done.done():
            self._done.set_result(outcome)

    def _save(self, *, power_lost: bool | None) -> None:
        assert self.node is not None
        self._saved = self.state.save(self.node.persist, self.boots, power_lost=power_lost, unless=self._saved)

    def _emit(self, what: str, data: Mapping[str, Any]) -> None:
        self.events(self.spec.serial, what, data)

    # ------------------------------------------------------------------------------------- timers --
    def set_timer(self, name: TimerName, at: float) -> None:
        old = self._handles.pop(name, None)
        if old is not None:
            old.cancel()
        assert self._loop is not None
        token, gen = self.book.set(name), self.book.gen
        delay = max(0.0, at - time.time())
        self._handles[name] = self._loop.call_at(self._loop.time() + delay, self._fire, name, token, gen, at)

    def _fire(self, name: TimerName, token: int, gen: int, at: float) -> None:
        self._handles.pop(name, None)
        if not self.book.take(name, token, gen):
            return
        assert self.node is not None and self._loop is not None
        gate = self.platform.gate(name, self.node)
        if gate is None:
            self._call(self.node.on_timer, name, max(at, time.time()))
            return
        self._spawn(self._gated(name, gate, gen))

    async def _gated(self, name: TimerName, gate: Awaitable[None], gen: int) -> None:
        """Deliver timer ``name`` once the real work behind it is done; retry it on a failure."""
        try:
            await gate
        except Exception as exc:  # noqa: BLE001 - any failure of the real work: say it, try again later
            if gen == self.book.gen:
                self._emit("platform_error", {"timer": str(name), "error": str(exc)})
                self.set_timer(name, time.time() + PLATFORM_RETRY)
            return
        if gen == self.book.gen:
            assert self.node is not None
            self._call(self.node.on_timer, name, time.time())

    def cancel_all(self) -> None:
        self.book.cancel_all()
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    # ------------------------------------------------------------------------------------ network --
    def send(self, req: Send) -> None:
        """Start one exchange. Info also carries the per-object reports that changed (their
        state read now, with the device report the node just made)."""
        assert self._loop is not None and self.node is not None
        objects = self._objects.pending(self.node, time.time()) if req.kind == "info" else []
        self._spawn(self._exchange(req, self.book.gen, objects))

    async def _tpm_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A real TPM runs tpm2-tools (seconds): off the loop. The soft one signs in microseconds."""
        if self.tpm.kind == "soft":
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def _tpm_attest(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The TPM's part of an attest request (spec §5): the certs of the node's ATTEST_REQ_CERT
        post (made at zedagent start and again while refused), and the quote itself, which waits
        for a cert post of this boot still in flight, so that the controller has the attestation
        key's cert before it checks the quote. None: the TPM failed (the node re-sends the same
        step, as EVE's attest task does)."""
        kind = body.get("type")
        try:
            if kind == "CERT" and not body.get("certs"):
                return {**body, "certs": await self._tpm_call(self.tpm.certs, self.link.device)}
            if kind != "QUOTE" or not body.get("tpm"):
                return body
            posting = self._cert_post
            if posting is not None:
                await posting.wait()
            nonce = str(body.get("nonce") or "").encode()
            return {**body, **await self._tpm_call(self.tpm.quote, nonce)}
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._emit("tpm_error", {"request": kind, "error": str(exc)})
            return None

    def _timeouts(self, kind: str) -> SendTimeouts:
        """EVE's limits for a request of ``kind`` (:mod:`eve.send`), from the node's config items."""
        assert self.node is not None
        return self.node.send_timeouts(kind)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run ``coro`` as a task of this boot's loop, kept referenced until it ends."""
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_links(self, gen: int) -> None:
        """nim's view of the links (spec §4): the platform's link state, read every
        ``LINK_POLL`` seconds; a change is the node's ``links`` input (a download with no usable
        link makes no progress and stalls, eve/node.py ``Node.links``)."""
        node = self.node
        known: frozenset[str] = frozenset()
        while gen == self.book.gen and node is self.node and node is not None:
            down = self.platform.links_down()
            if down is not None and down != known:
                known = down
                self._call(node.links, down, time.time())
            await asyncio.sleep(LINK_POLL)

    async def _watch_faults(self, inbox: FaultInbox, gen: int) -> None:
        """The faults the harness sends this boot (eden/agent/faults.py), each the node input the
        simulator calls for the same step; a line that is no fault is reported and skipped."""
        node = self.node
        while gen == self.book.gen and node is self.node and node is not None:
            faults, refused = inbox.read()
            for bad in refused:
                self._emit("fault_refused", {"line": bad.line, "why": bad.why})
            for fault in faults:
                method, args = node_input(fault)
                self._emit("fault_injected", fault.model_dump(exclude_none=True))
                self._call(getattr(node, method), *args, time.time())
            await asyncio.sleep(FAULT_POLL)

    async def _controller_certs(self, gen: int) -> None:
        """zedagent's ``controllerCertsTask`` (P:cmd/zedagent/handlecertconfig.go, spec §1 table):
        GET certs when zedagent starts, then every U[0.3,1] x timer.cert.interval, or
        U[0.3,1] x 120 s while fetches fail. Agent-side I/O only: the node model is not told."""
        rng = random.Random(f"{self.spec.seed}:{self.boots}:certs")
        node = self.node
        assert node is not None
        while gen == self.book.gen:
            status = 0
            if not node.net_broken:  # an image whose network never comes up sends nothing
                urls = self.urls.for_ports(tuple(p.name for p in self.params.ports))
                status, _ = await self.transport.send(self.link, "certs", {}, urls, device_uuid=node.persist.uuid,
                                                      timeout=self._timeouts("certs"))
            if gen != self.book.gen:
                return
            interval = float(node.item("timer.cert.interval")) if status == 200 else CERTS_RETRY
            await asyncio.sleep(rng.uniform(0.3, 1.0) * interval)

    async def _exchange(self, req: Send, gen: int, objects: list[dict[str, Any]] | None = None) -> None:
        node = self.node
        assert node is not None
        timeout = self._timeouts(req.kind)
        urls = self.urls.for_ports(req.ports)
        uuid = node.persist.uuid

        async def do() -> tuple[int, dict[str, Any]]:
            out: Mapping[str, Any] | None = {**req.body, "objects": objects} if objects else req.body
            if req.kind == "attest":
                out = await self._tpm_attest(req.body)
            if out is None:
                return 0, {"error": "tpm"}
            return await self.transport.send(self.link, req.kind, out, urls, device_uuid=uuid, timeout=timeout)

        certs = req.kind == "attest" and req.body.get("type") == "CERT"
        if certs:
            posting = self._cert_post = asyncio.Event()  # a quote of this boot waits for it (_tpm_attest)
        try:
            status, body = await do()
        except CodecError as exc:
            status, body = 0, {"error": "decode", "detail": str(exc)}
        finally:
            if certs:
                posting.set()
        if certs:
            self._emit("certs_posted", {"status": status})
        if gen != self.book.gen:
            return  # sent before a reset or power cut: the answer has nobody to go to
        if objects and 200 <= status < 300:
            self._objects.acknowledged(objects)
        self._call(node.on_response, req.rid, status, body, time.time())
