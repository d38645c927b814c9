"""N emulated EVE devices in one asyncio loop (KWOK-style): one :class:`AgentDriver` per device,
all sharing one :class:`MeasuredTransport` (one aiohttp session, a bounded keep-alive pool).

What is per device is kept small: the node model, an in-memory "disk" (:class:`MemoryState`), an
EC P-256 key and self-signed certificate (made at start, as EVE does on first boot) and a
:class:`DeviceLink`. What all devices share is made once: the node parameters (one profile
lookup), the image map, the controller's signing-certificate index learnt from ``certs``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cryptography import x509

from eden.agent.driver import AgentDriver, PortUrls
from eden.agent.spec import AgentSpec
from eden.agent.state import Saved
from eden.agent.transport import DeviceLink, Transport, image_map
from eden.emulate.recorder import Recorder
from eden.wire import pki
from eve.node import NodeParams, Persist
from eve.send import SendTimeouts


class MemoryState:
    """The agent's state directory, in memory: ``load``/``save`` as :class:`eden.agent.state.StateDir`.

    Keeps a reference to the node's :class:`Persist` (no serialisation per action). ``power_lost``
    is what a power cut would leave behind; it is applied to the persist on the next load, as the
    state directory does through its JSON."""

    __slots__ = ("persist", "boots", "power_lost")

    def __init__(self) -> None:
        self.persist: Persist | None = None
        self.boots = 0
        self.power_lost: bool | None = None

    def load(self) -> Saved | None:
        if self.persist is None:
            return None
        if self.power_lost is not None:
            self.persist.power_lost = self.power_lost
        return Saved(self.persist, self.boots)

    def save(self, persist: Persist, boots: int, *, power_lost: bool | None = None, unless: bytes | None = None) -> bytes:
        self.persist, self.boots, self.power_lost = persist, boots, power_lost
        return b""


class MeasuredTransport(Transport):
    """The agent transport, timing every exchange into a :class:`Recorder` and sharing the
    controller signing-certificate index between devices (the same ``certs`` answer is parsed and
    chain-checked once, not once per device)."""

    def __init__(self, root_pem: bytes, recorder: Recorder, *, connections: int) -> None:
        super().__init__(root_pem, connections=connections)
        self.recorder = recorder
        self._certs_seen: tuple[bytes, dict[bytes, x509.Certificate]] | None = None

    async def send(self, link: DeviceLink, kind: str, body: Mapping[str, Any], urls: Sequence[str], *,
                   device_uuid: str | None, timeout: SendTimeouts | float) -> tuple[int, dict[str, Any]]:
        clock = self.recorder.clock
        t0 = clock()
        status, answer = await super().send(link, kind, body, urls, device_uuid=device_uuid, timeout=timeout)
        self.recorder.add(kind, t0, clock() - t0, status, answer.get("error") if status == 0 else None)
        return status, answer

    def _learn_certs(self, link: DeviceLink, payload: bytes) -> dict[bytes, x509.Certificate]:
        seen = self._certs_seen
        if seen is not None and seen[0] == payload:
            link.signing = seen[1]
            return seen[1]
        index = super()._learn_certs(link, payload)
        self._certs_seen = (payload, index)
        return index

    async def probe(self, url: str, timeout: float = 5.0) -> str | None:
        """GET the controller's ``ping``: None when it answers over verified TLS, else why not."""
        import aiohttp

        try:
            session = self._get_session()
            async with session.get(url.rstrip("/") + "/api/v2/edgedevice/ping", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                await r.read()
                return None if r.status < 500 else f"ping answered {r.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"


@dataclass
class FleetEvents:
    """What the devices' event lines say, aggregated (no line is written per device)."""

    start: float
    onboarded_at: dict[int, float] = field(default_factory=dict)  # device -> monotonic time of its first onboarding
    counts: Counter[str] = field(default_factory=Counter)


class EmulatedDevice:
    __slots__ = ("index", "spec", "params", "state", "link", "driver", "started", "stopping", "reboots", "failure")

    def __init__(self, index: int, spec: AgentSpec, params: NodeParams, link: DeviceLink) -> None:
        self.index = index
        self.spec = spec
        self.params = params
        self.state = MemoryState()
        self.link = link
        self.driver: AgentDriver | None = None
        self.started: float | None = None
        self.stopping = False
        self.reboots = 0
        self.failure: BaseException | None = None

    async def run(self, fleet: "Fleet", delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if self.stopping:
            return
        self.started = time.monotonic()
        while not self.stopping:
            driver = AgentDriver(spec=self.spec, params=self.params, state=self.state,  # type: ignore[arg-type]
                                 transport=fleet.transport, link=self.link, urls=fleet.urls, events=fleet.sink(self))
            self.driver = driver
            driver.start()
            try:
                outcome = await driver.wait()
            except Exception as exc:  # a bug in the rules: this device stops, the fleet goes on
                self.failure = exc
                fleet.events.counts["device_failed"] += 1
                return
            if outcome.kind != "reboot":
                return
            self.reboots += 1

    def stop(self) -> None:
        self.stopping = True
        if self.driver is not None:
            self.driver.power_off()


class Fleet:
    """Build N devices from one template spec; :meth:`start` them spread over ``ramp`` seconds."""

    def __init__(self, *, template: AgentSpec, count: int, serial_prefix: str, transport: MeasuredTransport,
                 url: str, onboard: pki.Issued) -> None:
        self.transport = transport
        self.urls = PortUrls(default=url)
        self.events = FleetEvents(start=time.monotonic())
        self.devices: list[EmulatedDevice] = []
        self.tasks: list[asyncio.Task[None]] = []
        base = template.node_params()
        images = image_map(list(template.images))
        t0 = time.perf_counter()
        for i in range(count):
            serial = serial_name(serial_prefix, i)
            spec = template.model_copy(update={"serial": serial, "seed": template.seed + i})
            params = dataclasses.replace(base, device_id=serial, serial=serial)
            link = DeviceLink(device=pki.create_device(serial), onboard=onboard, images=images, serial=serial,
                              soft_serial=str(uuid.uuid5(uuid.NAMESPACE_DNS, serial)))  # the link outlives reboots
            self.devices.append(EmulatedDevice(i, spec, params, link))
        self.identity_seconds = time.perf_counter() - t0

    def sink(self, device: EmulatedDevice) -> Any:
        events = self.events

        def on_event(_serial: str, what: str, _data: Mapping[str, Any]) -> None:
            events.counts[what] += 1
            if what == "onboarded" and device.index not in events.onboarded_at:
                events.onboarded_at[device.index] = time.monotonic()

        return on_event

    def start(self, ramp: float) -> None:
        n = len(self.devices)
        self.events.start = time.monotonic()
        for d in self.devices:
            delay = ramp * d.index / n if n > 1 else 0.0
            self.tasks.append(asyncio.get_running_loop().create_task(d.run(self, delay)))

    @property
    def started(self) -> int:
        return sum(1 for d in self.devices if d.started is not None)

    def onboarding_seconds(self) -> list[float]:
        """Per onboarded device: seconds from its power-on to its uuid (certs, register, uuid)."""
        return [t - self.devices[i].started for i, t in self.events.onboarded_at.items() if self.devices[i].started is not None]

    @property
    def onboarded(self) -> int:
        return len(self.events.onboarded_at)

    async def stop(self) -> None:
        """Power every device off, wait for all of them, then close every connection."""
        for d, task in zip(self.devices, self.tasks):
            d.stop()
            if d.started is None:
                task.cancel()  # still waiting for its ramp slot
        for d in self.devices[len(self.tasks):]:
            d.stop()
        if self.tasks:
            await asyncio.wait(self.tasks)
        await self.transport.close()


def serial_name(prefix: str, index: int) -> str:
    return f"{prefix}{index:05d}"
