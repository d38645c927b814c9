"""The EVE rule set of :class:`eve.node.Node`, one timing or state rule per test.

Every test drives a bare ``Node`` through :class:`Driver` below: a heap of timers, a fake
controller answering each request with a chosen status and body, and a clock that jumps to the
next event. No SimPy, no engine: what is checked is the node's own reaction to its inputs.
Section numbers (``§3``) refer to shared/reference/eve-behaviour.md.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import json
from typing import Any, Callable

import numpy as np
import pytest

from eve.enums import (
    AttestState,
    BaseOsStatus,
    BaseOsSubStatus,
    BootReason,
    ConfigGetStatus,
    DPCState,
    MaintenanceModeReason,
    PartitionState as PS,
    ZDeviceState,
    ZSwState,
)
from eve.driving import TimerBook, dispatch
from eve.node import ImageInfo, Node, NodeParams, Port, Send
from eve.vocab import TimerName

MiB = 2**20
GiB = 2**30
BOOT = 30.0  # fixed boot time (power-on -> agents) used by every test node
LAT = 0.05  # controller round trip used by the fake controller
TIMEOUT = 10.0  # dial timeout when nothing answers (§1, timer.dial.timeout)


# ------------------------------------------------------------------------------ test harness --
class FakeController:
    """Answers requests like a controller would; every answer can be overridden per request kind.

    ``override[kind]`` is a function ``(send, now) -> (status, body, latency) | None``; None falls
    through to the default answer. ``down`` = "timeout" (nothing answers) or "refused".
    """

    def __init__(self) -> None:
        self.config: dict[str, Any] = {"items": {}, "baseos": None, "reboot": 0, "apps": {}, "maintenance": False}
        self.override: dict[str, Callable[[Send, float], tuple[int, dict[str, Any], float] | None]] = {}
        self.down: str | None = None
        self.port_down: set[str] = set()
        self.quote_code = "SUCCESS"
        self.escrow: str | None = None
        self.token: str | None = None
        self.cert: str | None = None
        self.info: dict[str, Any] | None = None
        self._n = 0

    # admin side
    def set(self, **changes: Any) -> None:
        self.config.update(copy.deepcopy(changes))

    def item(self, key: str, value: Any) -> None:
        self.config["items"] = {**self.config["items"], key: value}

    def update_to(self, image: str, version: str, *, activate: bool = True, retry: int = 0) -> None:
        self.config["baseos"] = {"image": image, "version": version, "activate": activate, "retry": retry}

    def retry_update(self) -> None:
        self.config["baseos"] = {**self.config["baseos"], "retry": self.config["baseos"]["retry"] + 1}

    def full_config(self) -> dict[str, Any]:
        cfg = copy.deepcopy(self.config)
        cfg["hash"] = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]
        return cfg

    # device side
    def __call__(self, send: Send, now: float) -> tuple[int, dict[str, Any], float]:
        if not send.ports or all(p in self.port_down for p in send.ports) or self.down == "timeout":
            return 0, {"error": "timeout"}, TIMEOUT
        if self.down == "refused":
            return 0, {"error": "refused"}, LAT
        fn = self.override.get(send.kind)
        if fn is not None:
            answer = fn(send, now)
            if answer is not None:
                return answer
        body = send.body
        if send.kind in ("certs", "ping"):
            return 200, {}, LAT
        if send.kind == "register":
            if self.cert is None:
                self.cert = body.get("cert")
                return 201, {}, LAT
            return (200 if body.get("cert") == self.cert else 409), {}, LAT
        if send.kind == "uuid":
            return 200, {"uuid": "uuid-1"}, LAT
        if send.kind == "config":
            cfg = self.full_config()
            if body.get("hash") == cfg["hash"]:
                return 304, {}, LAT
            return 200, {"config": cfg}, LAT
        if send.kind == "info":
            self.info = body
            return 201, {}, LAT
        if send.kind == "metrics":
            return 201, {}, LAT
        if send.kind == "attest":
            kind = body["type"]
            if kind == "NONCE":
                self._n += 1
                return 201, {"type": "NONCE", "nonce": f"nonce-{self._n}"}, LAT
            if kind == "QUOTE":
                if self.quote_code != "SUCCESS":
                    return 201, {"type": "QUOTE", "code": self.quote_code, "mismatch": [0]}, LAT
                self._n += 1
                self.token = f"token-{self._n}"
                return 201, {"type": "QUOTE", "code": "SUCCESS", "token": self.token, "key": self.escrow}, LAT
            if kind == "STORE_KEYS":
                if body.get("token") != self.token:
                    return 201, {"type": "STORE_KEYS", "code": "ITOKEN_MISMATCH"}, LAT
                self.escrow = body.get("key")
                return 201, {"type": "STORE_KEYS", "code": "SUCCESS"}, LAT
            if kind == "CERT":
                return 201, {"type": "CERT"}, LAT
        return 400, {}, LAT


class Driver:
    """A deterministic event loop for one node: timers on a heap, the fake controller for requests.

    It keeps the driver contract of :mod:`eve.driving` (a timer name set again moves it; CancelAll
    drops every timer and every answer still in flight; Reset powers the node on again at once) and
    records what the node did for the tests to read.
    """

    def __init__(self, node: Node, ctrl: FakeController | None = None) -> None:
        self.node = node
        self.ctrl = ctrl or FakeController()
        self.now = 0.0
        self._heap: list[tuple[float, int, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.book = TimerBook()
        self.sends: list[tuple[float, Send]] = []
        self.responses: list[tuple[float, str, int, dict[str, Any]]] = []
        self.notes: list[tuple[float, str, dict[str, Any]]] = []
        self.resets: list[tuple[float, BootReason | None]] = []
        self.timers_set: list[tuple[float, TimerName, float]] = []
        self._watch: list[tuple[Callable[[Node], Any], list[tuple[float, Any]]]] = []

    # -- plumbing
    def _push(self, at: float, event: tuple[Any, ...]) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), event))

    # the ActionSink of eve.driving
    def send(self, req: Send) -> None:
        self.sends.append((self.now, req))
        status, body, latency = self.ctrl(req, self.now)
        self._push(self.now + latency, ("resp", self.book.gen, req, status, body))

    def set_timer(self, name: TimerName, at: float) -> None:
        tok = self.book.set(name)
        self.timers_set.append((self.now, name, at))
        self._push(max(at, self.now), ("timer", self.book.gen, name, tok))

    def note(self, what: str, data: Any) -> None:
        self.notes.append((self.now, what, data))

    def cancel_all(self) -> None:
        self.book.cancel_all()

    def reset(self, reason: BootReason | None) -> None:
        self.resets.append((self.now, reason))
        self._push(self.now, ("power_on", self.book.gen))

    def apply(self, actions: list[Any]) -> None:
        dispatch(actions, self)
        for fn, trace in self._watch:
            value = fn(self.node)
            if not trace or trace[-1][1] != value:
                trace.append((self.now, value))

    def step(self) -> bool:
        if not self._heap:
            return False
        at, _seq, ev = heapq.heappop(self._heap)
        self.now = max(self.now, at)
        kind, gen = ev[0], ev[1]
        if gen != self.book.gen:
            return True
        if kind == "timer":
            name, tok = ev[2], ev[3]
            if self.book.take(name, tok, gen):
                self.apply(self.node.on_timer(name, self.now))
        elif kind == "resp":
            send, status, body = ev[2], ev[3], ev[4]
            self.responses.append((self.now, send.kind, status, body))
            self.apply(self.node.on_response(send.rid, status, body, self.now))
        elif kind == "power_on":
            self.apply(self.node.power_on(self.now))
        return True

    # -- inputs
    def power_on(self) -> None:
        self.apply(self.node.power_on(self.now))

    def power_off(self) -> None:
        self.apply(self.node.power_off(self.now))

    def call(self, method: str, *args: Any) -> None:
        self.apply(getattr(self.node, method)(*args, self.now))

    def watch(self, fn: Callable[[Node], Any]) -> list[tuple[float, Any]]:
        trace: list[tuple[float, Any]] = [(self.now, fn(self.node))]
        self._watch.append((fn, trace))
        return trace

    # -- time
    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            self.step()
        self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run(self.now + seconds)

    def run_until(self, pred: Callable[[], bool], limit: float = 7200.0) -> float:
        """Step until ``pred()`` holds; fail the test if it does not within ``limit`` seconds."""
        end = self.now + limit
        while not pred():
            if not self._heap or self._heap[0][0] > end:
                raise AssertionError(f"condition not reached within {limit} s (t={self.now:.2f})")
            self.step()
        return self.now

    # -- observations
    def sent(self, kind: str, since: float = -1.0) -> list[tuple[float, Send]]:
        return [(t, s) for t, s in self.sends if s.kind == kind and t >= since]

    def note_times(self, what: str, since: float = -1.0) -> list[float]:
        return [t for t, w, _d in self.notes if w == what and t >= since]

    def notes_of(self, what: str, since: float = -1.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, d) for t, w, d in self.notes if w == what and t >= since]

    def has_note(self, what: str, since: float = -1.0) -> bool:
        return bool(self.note_times(what, since))


def make_node(
    *,
    seed: int = 1,
    tpm: bool = True,
    cores: int = 4,
    memory: int = 4 * GiB,
    reserved: int = 1 * GiB,
    next_behaviour: str = "good",
    ports: tuple[Port, ...] | None = None,
    firmware: str = "uefi:edk2:x86_64",
    serial: str = "test-0",
    write_error: float = 0.0,
    smart: bool = True,
    kdump: bool = True,
) -> Node:
    images = {
        "base": ImageInfo("base", "1.0", "good", 100 * MiB),
        "next": ImageInfo("next", "2.0", next_behaviour, 100 * MiB),
    }
    params = NodeParams(
        device_id="dut-0",
        serial=serial,
        profile="test",
        cores=cores,
        memory=memory,
        reserved_memory=reserved,
        tpm=tpm,
        firmware=firmware,
        ports=ports or (Port("eth0", "ethernet", True, 0, 12.5e6), Port("eth1", "ethernet", True, 10, 12.5e6)),
        boot_time=lambda rng: BOOT,
        write_speed=100 * MiB,
        images=images,
        write_error=write_error,
        smart_power_cycles=smart,
        kdump=kdump,
    )
    return Node(params, "base", np.random.default_rng(seed))


def driver(**kw: Any) -> Driver:
    return Driver(make_node(**kw))


def online(drv: Driver) -> Driver:
    """Power on and run until the device has its config and has attested."""
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.config_received and drv.node.attest.state == AttestState.COMPLETE, limit=600)
    return drv


def zb(drv: Driver) -> Any:
    return drv.node.zboot


def start_update(drv: Driver, image: str = "next", version: str = "2.0") -> float:
    """Hand out the update and run until the new image's agents run in its test boot."""
    drv.ctrl.update_to(image, version)
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)
    drv.run_until(lambda: drv.node.phase == "running" and drv.node.nodeagent.testing)
    return drv.node.agents_at


def in_test_window(drv: Driver) -> float:
    start_update(drv)
    drv.run_until(lambda: drv.node.nodeagent.test_start is not None)
    return drv.node.nodeagent.test_start


def reboot_done(drv: Driver) -> float:
    """Run until the next hardware reset and the agents of the following boot; return the reset time."""
    n = len(drv.resets)
    drv.run_until(lambda: len(drv.resets) > n)
    reset_at = drv.resets[-1][0]
    drv.run_until(lambda: drv.node.phase == "running")
    return reset_at


def on_grid(drv: Driver, t: float) -> bool:
    """nodeagent's timers are checked every 10 s on a counter started with the agents (§3 step 8)."""
    return abs(((t - drv.node.agents_at) / 10.0) - round((t - drv.node.agents_at) / 10.0)) < 1e-6


def status(drv: Driver) -> tuple[BaseOsStatus, BaseOsSubStatus]:
    s, sub, _err = drv.node.baseosmgr.user_status()
    return s, sub


# ----------------------------------------------------------------------------------- §1 onboarding --
def test_onboarding_backoff_doubles_from_1s_to_a_600s_cap_without_jitter() -> None:
    """§1: retry ticker 1 s doubling to a 600 s cap, no jitter, no limit."""
    runs = []
    for seed in (1, 99):
        drv = driver(seed=seed)
        drv.ctrl.override["certs"] = lambda s, t: (503, {}, 0.0)
        drv.power_on()
        drv.run(BOOT + 1023 + 5 * 600 + 1)
        times = [t for t, _s in drv.sent("certs")]
        runs.append(times)
        assert times[0] == pytest.approx(BOOT)  # the first attempt as the agents start
        assert not drv.sent("register") and not drv.sent("config")
    gaps = np.diff(runs[0]).tolist()
    assert gaps[:15] == pytest.approx([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600, 600, 600])
    assert runs[0] == runs[1]  # no jitter: another random stream gives the same times


def test_a_refused_register_is_ignored_and_uuid_decides() -> None:
    """§1 Onboarding (P:cmd/client/client.go ``selfRegister``, ``tryRegister``): the register
    answer only sets the LED; uuid follows whatever it was, so a device whose register is refused
    still onboards, and a refused register is posted again on the next attempt."""
    drv = driver()
    drv.ctrl.override["register"] = lambda s, t: (409, {}, 0.0)
    uuid_fails = [404, 404]  # the first attempt fails: register + uuid + uuid

    def uuid(s: Any, t: float) -> tuple[int, dict[str, Any], float] | None:
        return (uuid_fails.pop(), {}, 0.0) if uuid_fails else None

    drv.ctrl.override["uuid"] = uuid
    drv.power_on()
    drv.run_until(lambda: drv.node.onboarded)
    kinds = [k for _t, k, _s, _b in drv.responses if k in ("certs", "register", "uuid")]
    assert kinds == ["certs", "register", "uuid", "uuid", "register", "uuid"]
    assert [d["status"] for _t, d in drv.notes_of("register_refused")] == [409, 409]
    assert drv.node.persist.uuid == "uuid-1"


def test_onboarding_retries_register_and_uuid_twice_until_uuid_answers() -> None:
    """§1 Onboarding (P:cmd/client/client.go ``Run``: ``tryRegister``, ``selfRegister``,
    ``doGetUUID``): ``selfRegister`` reports not-done for every HTTP answer, 200/201 included, so
    every attempt posts register again; each failed attempt is register + uuid + uuid (certs only
    until fetched once in the boot); the attempts follow the 1 s doubling ticker."""
    drv = driver()
    uuid_fails = [404] * 6  # three failed attempts, two uuid posts each

    def uuid(s: Any, t: float) -> tuple[int, dict[str, Any], float] | None:
        return (uuid_fails.pop(), {}, 0.0) if uuid_fails else None

    drv.ctrl.override["uuid"] = uuid
    # 201 for the first registration, 200 for a repeat with the same device cert (api:APIv2.md)
    drv.ctrl.override["register"] = lambda s, t: (200 if drv.sent("uuid") else 201, {}, 0.0)
    drv.power_on()
    drv.run_until(lambda: drv.node.onboarded)
    kinds = [k for _t, k, _s, _b in drv.responses if k in ("certs", "register", "uuid")]
    assert kinds == ["certs"] + ["register", "uuid", "uuid"] * 3 + ["register", "uuid"]
    assert [s for _t, _k, s, _b in drv.responses if _k == "register"] == [201, 200, 200, 200]
    assert not drv.notes_of("register_refused")
    reg = [t for t, _s in drv.sent("register")]
    assert np.diff(reg).tolist() == pytest.approx([1, 2, 4])  # the ticker (these answers take no time)
    assert drv.node.persist.uuid == "uuid-1"
    drv.run_for(1)
    assert drv.sent("config"), "zedagent starts polling once onboarded"


def test_onboarding_uses_cached_uuid_when_the_network_is_not_up_at_5s() -> None:
    """§1 fast path: cached UUID and DPC not Success at t=5 s -> done without the controller."""
    drv = online(driver())
    drv.ctrl.down = "timeout"
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    booted = drv.run_until(lambda: drv.node.phase == "running")
    drv.run_until(lambda: drv.node.zedagent.running)
    assert drv.now == pytest.approx(booted + 5.0)
    # §1: the saved config is read only once the first poll has failed; until then BOOTING (§7)
    assert drv.node.zedagent.config_status is None and drv.node.device_state() == ZDeviceState.BOOTING
    drv.run_until(lambda: drv.has_note("config_fail", since=booted))
    assert drv.node.zedagent.config_status == ConfigGetStatus.READ_SAVED  # §1 lastconfig checkpoint applied
    assert drv.notes_of("config_read_saved", since=booted)[0][1] == {"file": "lastconfig"}  # after POWER_FAIL
    assert drv.node.device_state() == ZDeviceState.ONLINE  # §7 ONLINE = config received or read from saved


def test_the_first_poll_of_every_boot_sends_an_empty_hash_and_gets_the_full_config() -> None:
    """§1: the config hash lives in memory only (prevConfigHash): after a reboot the first poll
    sends configHash="" and the controller answers 200 with the full config, so a reboot storm
    costs N full configs; a first poll that succeeds means lastconfig is never read."""
    drv = online(driver())
    drv.run_for(120)
    hashes = [send.body["hash"] for _t, send in drv.sent("config")]
    assert hashes[0] == "" and all(h for h in hashes[1:])
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    booted = drv.run_until(lambda: drv.node.phase == "running")
    drv.run_until(lambda: drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS)
    first = drv.sent("config", since=booted)[0][1]
    assert first.body["hash"] == ""
    assert [s for t, k, s, _b in drv.responses if k == "config" and t >= booted][0] == 200
    assert not drv.has_note("config_read_saved", since=booted)


def test_the_saved_config_after_a_crash_type_boot_is_lastconfig_bak() -> None:
    """§1: after a boot reason that does not StartWithSavedConfig (fallback, watchdog, fatal …)
    the first failed poll reads lastconfig.bak, which lags lastconfig by up to
    timer.test.baseimage.update (made at the first save, refreshed at most that often)."""
    drv = online(driver())
    bak = drv.node.persist.config_bak
    assert bak is not None and bak == drv.node.persist.config  # made at the first save
    drv.ctrl.item("timer.metric.interval", 30)
    drv.run_until(lambda: drv.node.item("timer.metric.interval") == 30)
    assert drv.node.persist.config_bak is bak  # within the window: not refreshed
    drv.ctrl.down = "timeout"
    drv.apply(drv.node.hang("zedagent", drv.now))
    drv.run_until(lambda: drv.node.phase == "running" and drv.node.boot_reason == BootReason.WATCHDOG_HUNG, limit=3600)
    drv.run_until(lambda: drv.node.zedagent.config_status == ConfigGetStatus.READ_SAVED, limit=600)
    assert drv.notes_of("config_read_saved")[-1][1] == {"file": "lastconfig.bak"}


# --------------------------------------------------------------------------------- §1 config polling --
def test_config_poll_interval_is_uniform_in_0_3_to_1_times_the_interval() -> None:
    """§1: each interval ~ U[0.3,1.0] x timer.config.interval; default 60 -> 18-60 s."""
    drv = online(driver(seed=5))
    start = drv.now
    drv.run_for(4 * 3600)
    times = [t for t, _s in drv.sent("config", since=start)]
    gaps = np.diff(times)
    assert len(gaps) > 200
    assert gaps.min() >= 18.0 - 1e-9 and gaps.max() <= 60.0 + 1e-9
    assert gaps.min() < 20.0 and gaps.max() > 58.0  # the whole range is used
    assert gaps.mean() == pytest.approx(39.0, abs=2.0)  # §9 mean poll 0.65 x 60 = 39 s


def test_config_interval_change_applies_at_once_and_forces_a_poll() -> None:
    """§1: a changed interval applies at runtime and forces an immediate tick; §6 range 5-86400."""
    drv = online(driver(seed=6))
    drv.run_for(100)
    drv.ctrl.item("timer.config.interval", 10)
    drv.run_until(lambda: drv.node.item("timer.config.interval") == 10)
    changed_at = drv.now
    got = [t for t, k, s, _b in drv.responses if k == "config" and s == 200 and t == changed_at]
    assert got, "the interval arrived in a 200 config"
    drv.run_for(0)
    polls = [t for t, _s in drv.sent("config", since=changed_at)]
    assert polls[0] == pytest.approx(changed_at)  # forced tick at once
    drv.run_for(1800)
    gaps = np.diff([t for t, _s in drv.sent("config", since=changed_at)])
    assert gaps.min() >= 3.0 - 1e-9 and gaps.max() <= 10.0 + 1e-9
    assert gaps.max() > 9.0 and gaps.min() < 4.0


def test_config_304_is_success_and_503_outside_an_update_is_fail() -> None:
    """§1: 304 -> Success; an error outside a base-OS update -> Fail, never TemporaryFail."""
    drv = online(driver())
    drv.run_until(lambda: any(k == "config" and s == 304 for _t, k, s, _b in drv.responses))
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS
    for code in (503, 404, 403, 500):
        drv.ctrl.override["config"] = lambda s, t, code=code: (code, {}, LAT)
        since = drv.now
        drv.run_until(lambda: any(k == "config" and t > since for t, k, _s, _b in drv.responses))
        assert drv.node.zedagent.config_status == ConfigGetStatus.FAIL, code
        assert drv.node.nodeagent.test_start is None and not drv.node.nodeagent.testing
    drv.ctrl.override.clear()
    drv.run_for(61)
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS


def test_503_in_the_test_window_is_temporary_fail_and_blocks_the_commit() -> None:
    """§1/§3 step 5: TemporaryFail counts as reachable but restarts the test window."""
    drv = driver()
    online(drv)
    t0 = in_test_window(drv)
    drv.run_for(100)
    drv.ctrl.override["config"] = lambda s, t: (503, {}, LAT)
    window = drv.watch(lambda n: n.nodeagent.test_start)
    drv.run_for(3 * 600)
    assert drv.node.zedagent.config_status == ConfigGetStatus.TEMPORARY_FAIL
    fails = [t for t, k, s, _b in drv.responses if k == "config" and s == 503]
    assert len(fails) > 40
    assert [t for t, v in window[1:]] == pytest.approx(fails)  # every 503 restarted the window
    assert drv.node.nodeagent.test_start == pytest.approx(fails[-1])
    assert zb(drv).current_partition.state == PS.INPROGRESS  # not committed ...
    assert not drv.has_note("update_committed") and not drv.has_note("reboot_scheduled", since=t0)  # nor fallen back
    assert drv.node.nodeagent.test_start > t0
    drv.ctrl.override.clear()
    committed = drv.run_until(lambda: drv.has_note("update_committed"))
    assert fails[-1] + 600 <= committed < fails[-1] + 610
    assert on_grid(drv, committed)


def test_plain_fail_in_the_test_window_does_not_restart_it() -> None:
    """§3 step 5: plain Fail (here a 500) does not restart the window."""
    drv = driver()
    drv.ctrl.item("timer.test.baseimage.update", 120)
    online(drv)
    t0 = in_test_window(drv)
    drv.ctrl.override["config"] = lambda s, t: (500, {}, LAT)
    committed = drv.run_until(lambda: drv.has_note("update_committed"))
    assert drv.node.zedagent.config_status == ConfigGetStatus.FAIL
    assert t0 + 120 <= committed < t0 + 130 and on_grid(drv, committed)


# ----------------------------------------------------------------------------------- §3 A/B update --
def test_ab_update_one_boot_test_window_from_first_success_then_commit() -> None:
    drv = driver()
    online(drv)
    assert zb(drv).snapshot()["current"] == "IMGA"
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)
    # §3 step 2: written into the other partition, other=updating -> UPDATING / UPDATE_REBOOTING
    assert zb(drv)["IMGB"].version == "2.0"
    assert status(drv) == (BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_REBOOTING)
    assert drv.node.device_state() == ZDeviceState.BASEOS_UPDATING
    scheduled = drv.notes_of("reboot_scheduled")[-1]
    assert scheduled[1]["reason"] == "UPDATE"
    drv.run_until(lambda: drv.node.phase == "running" and drv.node.nodeagent.testing)
    reset_t = drv.resets[-1][0]
    assert reset_t - scheduled[0] == pytest.approx(60.0)  # 30 s + (no domains) + 30 s (§3 reboot procedure)
    # §3 step 4: after the boot, current=inprogress
    assert zb(drv).current == "IMGB" and zb(drv)["IMGB"].state == PS.INPROGRESS
    assert zb(drv)["IMGA"].state == PS.ACTIVE
    assert drv.node.boot_reason == BootReason.UPDATE
    # §3 step 5: the test window starts at the first ConfigGetSuccess of this boot
    drv.run_until(lambda: drv.node.nodeagent.test_start is not None)
    first_ok = [t for t, k, s, _b in drv.responses if k == "config" and s in (200, 304) and t >= reset_t][0]
    assert drv.node.nodeagent.test_start == first_ok
    assert status(drv) == (BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_TESTING)
    committed = drv.run_until(lambda: drv.has_note("update_committed"))
    # §3 step 6: on expiry (checked on the 10 s grid) current=active, old=unused
    assert first_ok + 600 <= committed < first_ok + 610 and on_grid(drv, committed)
    assert zb(drv)["IMGB"].state == PS.ACTIVE and zb(drv)["IMGA"].state == PS.UNUSED
    assert zb(drv)["IMGA"].version == "1.0"
    assert status(drv) == (BaseOsStatus.UPDATED, BaseOsSubStatus.NONE)
    assert drv.node.running_version == "2.0"
    assert drv.node.device_state() == ZDeviceState.ONLINE
    assert [d["partition"] for _t, d in drv.notes_of("boot_start")] == ["IMGA", "IMGB"]  # one boot
    drv.run_for(3600)
    assert len(drv.notes_of("boot_start")) == 2 and drv.node.running_version == "2.0"
    assert drv.ctrl.info["baseos"]["status"] == "UPDATED"


def test_update_fallback_when_the_new_image_never_reaches_the_controller() -> None:
    """§3 step 7: no contact for timer.update.fallback.no.network (300 s) counted from nodeagent
    start -> BootReasonFallback on the 10 s grid, then the 30 s + 30 s reboot procedure."""
    drv = driver(next_behaviour="no-controller")
    online(drv)
    agents = start_update(drv)
    scheduled = drv.run_until(lambda: drv.has_note("reboot_scheduled", since=agents))
    assert drv.notes_of("reboot_scheduled", since=agents)[0][1]["reason"] == "FALLBACK"
    assert 300 < scheduled - agents <= 310 and on_grid(drv, scheduled)
    drv.run_until(lambda: drv.resets and drv.resets[-1][0] >= scheduled)
    assert drv.resets[-1] == (pytest.approx(scheduled + 60.0), BootReason.FALLBACK)  # ≈ 310 + 60 s (§3)
    drv.run_until(lambda: drv.node.phase == "running")
    _assert_fell_back(drv, BootReason.FALLBACK)
    assert drv.node.boot_reason_text.startswith("Exceeded fallback outage for controller connectivity 300 by ")


def _first_failed_poll(drv: Driver, after: float) -> float:
    return min(t for t, k, s, _b in drv.responses if k == "config" and s not in (200, 304) and t >= after)


def _tick_before(drv: Driver, t: float) -> float:
    start = drv.node.agents_at
    return start + (int((t - start) // 10.0)) * 10.0


def test_update_fallback_counts_from_the_first_failed_poll() -> None:
    """§3 step 7: nodeagent's lastControllerReachableTime is refreshed on every 10 s tick while its
    copy of the status is Success, and that copy changes only when a poll fails. So the 300 s
    count from the last tick before the first failed poll's result: the last success's poll
    interval and the failing poll's own timeout (min(3 x send timeout, 240 s)) come on top."""
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.run_for(200)
    down_at = drv.now
    drv.ctrl.down = "timeout"
    last = max(t for t, k, s, _b in drv.responses if k == "config" and s in (200, 304))
    scheduled = drv.run_until(lambda: drv.node.nodeagent.rebooting is not None)
    failed = _first_failed_poll(drv, down_at)
    assert scheduled - last > 310, "counted from the last success, not from the first failure"
    reachable = _tick_before(drv, failed)
    assert 300 < scheduled - reachable <= 310 and on_grid(drv, scheduled)
    assert drv.node.nodeagent.rebooting[0] == BootReason.FALLBACK
    assert drv.node.nodeagent.rebooting[1] == f"Exceeded fallback outage for controller connectivity 300 by {int(scheduled - reachable - 300)} seconds"
    assert reboot_done(drv) == pytest.approx(scheduled + 60)
    _assert_fell_back(drv, BootReason.FALLBACK)


def _assert_rolled_back(drv: Driver) -> None:
    """§3: after any end of the test boot, the old image is active and the new one inprogress."""
    node = drv.node
    assert zb(drv).current == "IMGA" and zb(drv)["IMGA"].state == PS.ACTIVE and zb(drv)["IMGA"].version == "1.0"
    assert zb(drv)["IMGB"].state == PS.INPROGRESS and zb(drv)["IMGB"].version == "2.0"
    assert node.running_version == "1.0" and not node.bricked
    assert drv.notes_of("booted")[-1][1]["rolled_back"] == "2.0"  # what the rollbacks metric counts


def _assert_fell_back(drv: Driver, reason: BootReason) -> None:
    """§3 controller view of a rollback: reason, old image active, new inprogress with swErr, FAILED."""
    node = drv.node
    _assert_rolled_back(drv)
    assert node.boot_reason == reason
    assert zb(drv).current == "IMGA" and zb(drv)["IMGA"].state == PS.ACTIVE and zb(drv)["IMGA"].version == "1.0"
    assert zb(drv)["IMGB"].state == PS.INPROGRESS and zb(drv)["IMGB"].version == "2.0"
    assert node.running_version == "1.0"
    rep = node.report(drv.now)
    assert [s["version"] for s in rep["sw"]] == ["1.0", "2.0"]  # swList = [current, other]
    assert rep["sw"][0]["err"] == "" and rep["sw"][1]["err"] != ""  # swErr on the failed image
    assert rep["baseos"]["status"] == "FAILED"
    assert status(drv)[0] == BaseOsStatus.FAILED
    assert not node.bricked


def test_an_image_that_dies_before_its_nodeagent_leaves_the_stale_update_reason_and_no_swerr() -> None:
    """§3 table, last row: a kernel panic before the new image's agents start. The old image finds
    the UPDATE record its own nodeagent wrote before the update reboot (first writer wins, nobody
    consumed it) and /persist/reboot-image naming itself, so no swErr: the failed version reads NONE."""
    drv = driver(next_behaviour="crash-on-boot")
    online(drv)
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: drv.has_note("crash"))
    assert zb(drv).current == "IMGB"
    drv.run_until(lambda: drv.node.phase == "running")
    _assert_rolled_back(drv)
    assert drv.node.boot_reason == BootReason.UPDATE
    assert drv.node.boot_reason_text == "NORMAL: baseos-update(IMGB) to EVE version 2.0 reboot"
    rep = drv.node.report(drv.now)
    assert rep["sw"][1]["err"] == "" and rep["baseos"]["err"] == ""
    assert status(drv)[0] == BaseOsStatus.NONE  # INFERRED in the spec: no swErr, not activated
    assert [d["partition"] for _t, d in drv.notes_of("boot_start")] == ["IMGA", "IMGB", "IMGA"]
    drv.run_for(3600)
    assert [d["partition"] for _t, d in drv.notes_of("boot_start")] == ["IMGA", "IMGB", "IMGA"]


@pytest.mark.parametrize(("smart", "reason"), [(True, BootReason.POWER_FAIL), (False, BootReason.UNKNOWN)])
def test_power_loss_in_the_test_window_reports_the_power_cut_not_fallback(smart: bool, reason: BootReason) -> None:
    """§3/§7: only nodeagent's timer gives FALLBACK. A power cut after the new image's nodeagent ran
    leaves no record: the old image synthesizes POWER_FAIL from SMART's power-cycle count, or UNKNOWN
    on storage without one (virtio, eMMC, SD), and the failed version carries that text as swErr."""
    drv = driver(smart=smart)
    online(drv)
    in_test_window(drv)
    drv.run_for(120)
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running")
    _assert_fell_back(drv, reason)
    assert drv.node.report(drv.now)["sw"][1]["err"] == drv.node.boot_reason_text != ""


def test_power_loss_while_the_new_image_boots_leaves_the_stale_update_reason() -> None:
    """§3 table, last row: power lost before the new image's nodeagent ran: stale UPDATE, no swErr."""
    drv = driver()
    online(drv)
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: drv.has_note("boot_start") and drv.notes_of("boot_start")[-1][1]["test_boot"])
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running")
    _assert_rolled_back(drv)
    assert drv.node.boot_reason == BootReason.UPDATE and status(drv)[0] == BaseOsStatus.NONE


def test_a_hung_agent_in_the_test_window_reports_the_watchdog() -> None:
    """§3/§7: the watchdog's reboot is recorded as WATCHDOG_HUNG; the old image reports it and the
    failed version carries it as swErr (reboot-image names the new partition)."""
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.apply(drv.node.hang("zedagent", drv.now))
    drv.run_until(lambda: drv.node.phase == "running" and zb(drv).current == "IMGA", limit=3600)
    _assert_fell_back(drv, BootReason.WATCHDOG_HUNG)


def _reboot_reason_recorded() -> Driver:
    """A device 30 s into nodeagent's REBOOT_CMD procedure: the reason is written, no reset yet (§3)."""
    drv = driver()
    drv.ctrl.set(reboot=1)
    online(drv)
    drv.run_for(60)
    drv.ctrl.set(reboot=2)
    drv.run_until(lambda: drv.node.persist.reboot_record is not None, limit=600)
    assert drv.node.persist.reboot_record[0] == BootReason.REBOOT_CMD and not drv.resets
    return drv


def test_a_kernel_panic_with_kdump_in_the_test_window_reports_kernel_with_the_dmesg_swerr() -> None:
    """§3 table "kernel panic with kdump, after its nodeagent ran" / §7 (eve:pkg/kdump/kdump.sh):
    every agent stops at the panic; kdump writes KERNEL and "kernel panic, dmesg collected …" and
    resets after the kernel's panic timeout, 120 s. reboot-image is not written (the new nodeagent
    deleted the old one), so the failed version carries the kdump text as swErr: FAILED."""
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.run_for(60)
    drv.call("kernel_panic")
    panicked = drv.now
    assert drv.node.phase == "rebooting" and drv.node.running_version == "2.0"
    reset_at = reboot_done(drv)
    assert reset_at == pytest.approx(panicked + 120.0)
    assert not [t for t, _s in drv.sends if panicked < t < reset_at]  # nothing of EVE runs meanwhile
    _assert_fell_back(drv, BootReason.KERNEL)
    assert drv.node.boot_reason_text.startswith("kernel panic, dmesg collected: /persist/kcrashes/dmesg-")
    assert drv.node.report(drv.now)["sw"][1]["err"] == drv.node.boot_reason_text


def test_kdump_overwrites_a_reason_already_recorded() -> None:
    """§3/§7: /persist/boot-reason is first-writer-wins for everyone but kdump, which overwrites it.
    A panic after nodeagent wrote REBOOT_CMD (30 s into its reboot procedure) boots with KERNEL."""
    drv = _reboot_reason_recorded()
    drv.call("kernel_panic")
    reboot_done(drv)
    assert drv.node.boot_reason == BootReason.KERNEL


@pytest.mark.parametrize(("smart", "reason"), [(True, BootReason.KERNEL), (False, BootReason.UNKNOWN)], ids=["smart", "no-smart"])
def test_a_kernel_panic_without_kdump_is_synthesized(smart: bool, reason: BootReason) -> None:
    """§3 table "power loss / reset after its nodeagent ran" / §7 synthesizeRebootReason: without
    kdump (aarch64, or < 2 GiB for crashkernel=) a panic records nothing and the kernel resets after
    120 s. SMART counters unchanged -> KERNEL; no SMART -> UNKNOWN; the synthesized text is swErr."""
    drv = driver(kdump=False, smart=smart)
    online(drv)
    in_test_window(drv)
    drv.call("kernel_panic")
    panicked = drv.now
    assert reboot_done(drv) == pytest.approx(panicked + 120.0)
    _assert_fell_back(drv, reason)
    assert drv.node.report(drv.now)["sw"][1]["err"] == drv.node.boot_reason_text != ""


def test_a_power_cut_after_a_kdump_still_reports_kernel() -> None:
    """§7: kdump wrote KERNEL before it slept the panic timeout; power lost during that sleep does
    not change what was recorded, so the next boot reports KERNEL, not POWER_FAIL."""
    drv = online(driver())
    drv.call("kernel_panic")
    drv.run_for(30)
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running")
    assert drv.node.boot_reason == BootReason.KERNEL


@pytest.mark.parametrize(
    ("crash", "reason", "text"),
    [("oom", BootReason.OOM, "oom_reaper"), ("agent_exit", BootReason.WATCHDOG_PID, "/run/zedagent.pid: process gone")],
)
def test_a_dead_agent_in_the_test_window_reports_the_watchdog_reason(crash: str, reason: BootReason, text: str) -> None:
    """§3 table "watchdog (… dead pid / OOM)" / §7 (eve:pkg/watchdog/watchdog-report.sh): the
    watchdog finds the pid dead at its next 1 s check; with oom_reaper in dmesg the report is OOM,
    else WATCHDOG_PID. It writes reboot-image = the new partition, so the old image's report gives
    the failed version the watchdog report as swErr: FAILED."""
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.call(crash, "zedagent")
    died = drv.now
    assert reboot_done(drv) == pytest.approx(died + 1.0)
    _assert_fell_back(drv, reason)
    assert text in drv.node.report(drv.now)["sw"][1]["err"]


def test_a_log_fatal_in_the_test_window_reports_fatal_not_the_watchdog() -> None:
    """§3 table "log.Fatal in an agent" / §7 (P:agentlog/agentlog.go RebootReason): the FatalHook
    writes FATAL and reboot-image; the process exits, the watchdog resets 1 s later, and its
    WATCHDOG_PID does not replace the FATAL (first writer wins). swErr = the fatal reason."""
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.call("agent_fatal", "zedmanager")
    died = drv.now
    assert reboot_done(drv) == pytest.approx(died + 1.0)
    assert drv.resets[-1][1] == BootReason.WATCHDOG_PID  # the watchdog did the reset ...
    _assert_fell_back(drv, BootReason.FATAL)  # ... but FATAL was recorded first
    err = drv.node.report(drv.now)["sw"][1]["err"]
    assert err.startswith("Reboot from agent zedmanager in partition IMGB at EVE version 2.0: fatal: agent zedmanager")


def test_a_log_fatal_does_not_replace_a_recorded_reason() -> None:
    """§7 agentlog RebootReason: the boot-reason file is written only if none exists, so a log.Fatal
    during nodeagent's reboot procedure (REBOOT_CMD already recorded) boots with REBOOT_CMD."""
    drv = _reboot_reason_recorded()
    drv.call("agent_fatal", "zedagent")
    reboot_done(drv)
    assert drv.node.boot_reason == BootReason.REBOOT_CMD


def test_failed_version_is_not_retried_until_retry_update_changes() -> None:
    """§3: EVE does not retry a failed version; a retry_update bump installs it for one more boot."""
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running")
    since = drv.now
    drv.run_for(1800)
    drv.ctrl.item("timer.metric.interval", 30)  # a new config (new hash) is parsed again ...
    drv.run_for(1800)
    assert drv.node.item("timer.metric.interval") == 30
    assert not drv.has_note("baseos_installed", since) and not drv.has_note("reboot_scheduled", since)  # ... no retry
    assert zb(drv)["IMGB"].state == PS.INPROGRESS and status(drv)[0] == BaseOsStatus.FAILED
    drv.ctrl.retry_update()
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)
    assert drv.node.nodeagent.rebooting[0] == BootReason.UPDATE
    drv.run_until(lambda: drv.has_note("update_committed", since))
    assert zb(drv).current == "IMGB" and zb(drv)["IMGB"].state == PS.ACTIVE
    assert status(drv)[0] == BaseOsStatus.UPDATED
    assert [d["partition"] for _t, d in drv.notes_of("boot_start")].count("IMGB") == 2
    # once UPDATED, a retry bump is only echoed (§3)
    since = drv.now
    drv.ctrl.retry_update()
    drv.run_for(600)
    assert not drv.has_note("reboot_scheduled", since)
    assert drv.node.report(drv.now)["baseos_update_counter"] == 2


def test_force_fallback_counter_reboots_into_the_old_image() -> None:
    """§3: force.fallback.counter change with current active, other unused with a version ->
    other=updating -> reboot into the old image."""
    drv = driver()
    drv.ctrl.item("timer.test.baseimage.update", 60)
    online(drv)
    in_test_window(drv)
    drv.run_until(lambda: drv.has_note("update_committed"))
    assert zb(drv)["IMGA"].state == PS.UNUSED and zb(drv)["IMGA"].version == "1.0"
    since = drv.now
    drv.ctrl.item("force.fallback.counter", 1)
    drv.run_until(lambda: zb(drv)["IMGA"].state == PS.UPDATING)
    # doZbootBaseOsInstallationComplete: the same reason and text as an update, to the old version
    assert drv.node.nodeagent.rebooting == (BootReason.UPDATE, "NORMAL: baseos-update(IMGA) to EVE version 1.0 reboot")
    reboot_done(drv)
    assert zb(drv).current == "IMGA" and drv.node.running_version == "1.0"
    assert [d["partition"] for _t, d in drv.notes_of("boot_start", since)] == ["IMGA"]


def test_force_fallback_needs_an_image_in_the_unused_partition_and_stays_pending() -> None:
    """§3 forcefallback.go: a change whose preconditions fail is not saved; it stays pending and
    acts once they hold (here: after an update leaves the old image in the unused partition)."""
    drv = online(driver())
    since = drv.now
    drv.ctrl.item("force.fallback.counter", 1)
    drv.run_for(600)
    assert drv.node.persist.force_fallback_seen == 0  # not saved: pending
    assert not drv.has_note("reboot_scheduled", since)
    assert zb(drv)["IMGB"].state == PS.UNUSED and zb(drv)["IMGB"].version is None
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: drv.has_note("update_committed"), limit=7200)
    committed = drv.now
    # the pending change acts as soon as the commit leaves the old image in the unused partition
    assert drv.notes_of("reboot_scheduled", since=committed)[0][1]["text"] == "NORMAL: baseos-update(IMGA) to EVE version 1.0 reboot"
    assert drv.node.persist.force_fallback_seen == 1


def test_the_first_retry_counter_is_compared_with_a_saved_0() -> None:
    """§3 handleUpdateRetryCounter: the saved counter is a file that reads 0 when absent, so the
    first counter the device ever sees (1) is a change: a failed version is retried."""
    drv = online(driver())
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: drv.node.phase == "running" and drv.node.nodeagent.testing)
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running" and zb(drv)["IMGB"].state == PS.INPROGRESS and zb(drv).current == "IMGA")
    assert drv.node.persist.retry_seen in (None, 0)
    since = drv.now
    drv.ctrl.retry_update()  # 0 -> 1: the first counter the device sees
    drv.run_until(lambda: drv.has_note("baseos_retry", since), limit=600)


def test_a_config_tick_during_a_slow_poll_is_held_not_dropped() -> None:
    """§1 flexTicker: a tick that fires while a poll runs is held (one deep); the next poll starts
    as soon as the slow one returns."""
    drv = online(driver())
    drv.ctrl.item("timer.config.interval", 5)
    drv.run_until(lambda: drv.node.item("timer.config.interval") == 5)
    drv.run_for(30)
    drv.ctrl.override["config"] = lambda s, t: (304, {}, 40.0)  # a 40 s poll: several ticks fire meanwhile
    since = drv.now
    drv.run_for(90)
    polls = [t for t, _s in drv.sent("config", since=since)]
    answers = [t for t, k, _s, _b in drv.responses if k == "config" and t >= since]
    assert len(polls) >= 2 and all(any(abs(p - a) < 1e-6 for a in answers) for p in polls[1:])


@pytest.mark.parametrize("stage", [ZSwState.DOWNLOAD_STARTED, ZSwState.LOADING], ids=["download", "write"])
def test_power_loss_during_download_or_write_resumes_the_update(stage: ZSwState) -> None:
    drv = online(driver())
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: (drv.node.persist.bos or {}).get("zsw") == stage)
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    drv.run_for(2 * 3600)
    assert zb(drv)["IMGB"].version == "2.0"
    assert drv.node.running_version == "2.0"


def test_new_version_during_the_test_window_is_reported_update_deferred() -> None:
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.ctrl.update_to("third", "3.0")
    drv.run_until(lambda: (drv.node.persist.bos or {}).get("version") == "3.0")
    drv.run_for(120)
    assert status(drv) == (BaseOsStatus.UPDATING, BaseOsSubStatus.UPDATE_DEFERRED)


def test_new_version_during_the_test_window_is_deferred_then_installed_after_commit() -> None:
    """§3 steps 1-2: the image is downloaded at once, but current=inprogress -> TooEarly, so
    nothing is written into the other partition until the commit."""
    drv = driver()
    online(drv)
    in_test_window(drv)
    drv.ctrl.update_to("third", "3.0")
    drv.run_until(lambda: (drv.node.persist.bos or {}).get("too_early") is True)
    assert drv.node.persist.bos["zsw"] == ZSwState.DELIVERED
    assert zb(drv)["IMGA"].state == PS.ACTIVE and zb(drv)["IMGA"].version == "1.0"  # untouched
    assert not drv.has_note("update_committed")
    drv.run_until(lambda: drv.has_note("update_committed"))
    drv.run_until(lambda: zb(drv)["IMGA"].state == PS.UPDATING)
    assert zb(drv)["IMGA"].version == "3.0" and drv.node.nodeagent.rebooting[0] == BootReason.UPDATE


def test_activating_update_makes_the_device_ignore_app_config_until_the_update_reboot() -> None:
    """§1 skips: new baseOS with activate=true -> app config ignored until after the update reboot."""
    drv = online(driver())
    drv.ctrl.update_to("next", "2.0")
    drv.ctrl.set(apps={"web": _app(1, 128 * MiB, MiB, "container")})
    drv.run_until(lambda: drv.node.nodeagent.rebooting is not None)
    assert "web" not in drv.node.zedmanager.apps
    reboot_done(drv)
    drv.run_until(lambda: drv.node.zedagent.config_received)
    # the new image changed the PCRs: the vault is locked until attestation returns the key, and
    # no app comes back before that (§5 WaitForVault)
    assert not drv.node.attest.vault_unlocked and "web" not in drv.node.zedmanager.apps
    drv.run_until(lambda: drv.node.attest.vault_unlocked)
    assert "web" in drv.node.zedmanager.apps


def test_no_app_comes_back_after_a_reboot_until_the_vault_unlocks() -> None:
    """§5: volumemgr and domainmgr wait for the vault at start; after a failed quote the vault
    stays locked and the apps stay down, however long the device is online."""
    drv = online(driver())
    drv.ctrl.set(apps={"web": _app(1, 128 * MiB, MiB, "container")})
    drv.run_until(lambda: drv.node.zedmanager.apps.get("web", {}).get("state") == ZSwState.RUNNING, limit=1800)
    drv.apply(drv.node.tamper("rootfs", drv.now))  # PCR 13 changes at the next boot
    drv.ctrl.override["attest"] = lambda s, t: (201, {"type": "QUOTE", "code": "QUOTE_FAILED"}, LAT) if s.body["type"] == "QUOTE" else None
    drv.power_off()
    drv.run_for(10)
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.config_received, limit=600)
    assert not drv.node.attest.vault_unlocked
    drv.run_for(1200)
    assert not drv.node.attest.vault_unlocked and drv.node.zedmanager.apps == {}


def test_activate_false_downloads_only() -> None:
    """§3: activate=false -> download and verify only: DELIVERED, reported NONE (not DOWNLOAD_DONE),
    no install, no reboot."""
    drv = online(driver())
    drv.ctrl.update_to("next", "2.0", activate=False)
    drv.run_until(lambda: (drv.node.persist.bos or {}).get("zsw") == ZSwState.DELIVERED)
    drv.run_for(1800)
    assert status(drv) == (BaseOsStatus.NONE, BaseOsSubStatus.NONE)
    assert zb(drv)["IMGB"].version is None and drv.node.nodeagent.rebooting is None
    drv.ctrl.update_to("next", "2.0", activate=True)  # activating the delivered image installs it
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)


def test_maintenance_mode_defers_base_os_and_apps() -> None:
    """§7: in maintenance mode config is still polled but app and baseOS changes are deferred."""
    drv = online(driver())
    drv.ctrl.set(maintenance=True)
    drv.run_until(lambda: drv.node.zedagent.maintenance)
    assert drv.node.device_state() == ZDeviceState.MAINTENANCE_MODE
    drv.ctrl.update_to("next", "2.0")
    drv.ctrl.set(apps={"web": _app(1, 128 * MiB, MiB, "container")})
    n = len(drv.sent("config"))
    drv.run_for(1800)
    assert len(drv.sent("config")) > n + 20  # still polled
    assert not drv.has_note("baseos_download") and "web" not in drv.node.zedmanager.apps
    drv.ctrl.set(maintenance=False)
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)


def test_write_read_back_mismatch_leaves_the_partition_unused() -> None:
    """§3 step 2: the version read back does not match -> unused, no reboot, update FAILED."""
    drv = Driver(make_node(write_error=1.0))
    online(drv)
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: (drv.node.persist.bos or {}).get("err"))
    drv.run_for(600)
    assert zb(drv)["IMGB"].state == PS.UNUSED and zb(drv)["IMGB"].version is None
    assert drv.node.nodeagent.rebooting is None and status(drv)[0] == BaseOsStatus.FAILED
    assert zb(drv).bootable() and zb(drv)["IMGA"].state == PS.ACTIVE


# ----------------------------------------------------------------------------------- §1 info, metrics --
def test_metrics_every_0_3_to_1_times_the_metric_interval() -> None:
    """§1: ZMetricMsg every U[0.3,1] x timer.metric.interval (60 s)."""
    drv = online(driver(seed=3))
    drv.run_for(4 * 3600)
    gaps = np.diff([t for t, _s in drv.sent("metrics")])
    assert gaps.min() >= 18.0 - 1e-9 and gaps.max() <= 60.0 + 1e-9 and len(gaps) > 200


def test_device_info_retry_backs_off_from_1_to_15_minutes() -> None:
    """§1: reliable-queue retry exponential 1 min -> 15 min, +-30 s noise; 5xx is retriable."""
    drv = online(driver(seed=4))
    drv.run_for(30)
    drv.ctrl.override["info"] = lambda s, t: (503, {}, 0.0)
    drv.ctrl.item("timer.metric.interval", 30)  # a config change: the device publishes its info
    drv.run_until(lambda: any(k == "info" and s == 503 for _t, k, s, _b in drv.responses))
    first = drv.now
    drv.run_for(5000)
    sends = [t for t, _s in drv.sent("info") if t > first]
    gaps = np.diff([first] + sends)
    expected = [60, 120, 240, 480, 900, 900]
    assert len(gaps) >= len(expected)
    assert all(base - 30 <= gap <= base + 30 for gap, base in zip(gaps, expected)), gaps[: len(expected)]


def test_device_info_is_retried_until_accepted() -> None:
    drv = online(driver(seed=4))
    drv.run_for(30)
    drv.ctrl.override["info"] = lambda s, t: (503, {}, 0.0)
    drv.ctrl.item("timer.metric.interval", 30)
    drv.run_until(lambda: any(k == "info" and s == 503 for _t, k, s, _b in drv.responses))
    first = drv.now
    drv.run_for(600)
    gaps = np.diff([first] + [t for t, _s in drv.sent("info") if t > first])
    assert len(gaps) >= 1 and all(30 <= g <= 900 + 30 for g in gaps)  # never faster than 1 min - 30 s
    drv.ctrl.override.clear()
    drv.run_for(960)
    assert drv.ctrl.info["at"] > first + 600 and not drv.node.zedagent.info_dirty
    assert drv.node.zedagent.info_backoff == 0.0


# ------------------------------------------------------------------------------- §1 reboot counter --
def test_reboot_counter_first_value_stored_then_change_reboots() -> None:
    drv = driver()
    drv.ctrl.set(reboot=5)
    online(drv)
    drv.run_for(600)
    assert drv.node.persist.reboot_seen == 5
    assert not drv.has_note("reboot_scheduled")  # the first counter ever seen is only stored
    drv.ctrl.set(reboot=6, apps={"late": {"kind": "container", "cpus": 1, "memory": 64 * MiB, "size": MiB}})
    scheduled = drv.run_until(lambda: drv.node.nodeagent.rebooting is not None)
    assert drv.node.nodeagent.rebooting[0] == BootReason.REBOOT_CMD
    assert drv.node.device_state() == ZDeviceState.REBOOTING
    assert "late" not in drv.node.zedmanager.apps  # rest of the config ignored (still saved)
    assert drv.node.persist.config["apps"]
    assert reboot_done(drv) == pytest.approx(scheduled + 60)
    assert drv.resets[-1][1] == BootReason.REBOOT_CMD
    assert drv.node.boot_reason == BootReason.REBOOT_CMD
    drv.run_for(60)
    assert drv.node.report(drv.now)["reboot_counter"] == 6  # echoed in rebootConfigCounter
    assert "late" in drv.node.zedmanager.apps  # saved config applied after the reboot


def test_reboot_requested_in_the_test_window_is_deferred_until_commit() -> None:
    """§1: a reboot requested during the update test window is deferred until the test completes."""
    drv = driver()
    online(drv)
    t0 = in_test_window(drv)
    drv.ctrl.set(reboot=1)
    drv.run_until(lambda: drv.node.persist.reboot_seen == 1)
    asked = drv.now
    assert drv.node.nodeagent.rebooting is None
    committed = drv.run_until(lambda: drv.has_note("update_committed"))
    assert committed >= t0 + 600
    scheduled = drv.notes_of("reboot_scheduled", since=asked)
    assert len(scheduled) == 1 and scheduled[0][0] == committed and scheduled[0][1]["reason"] == "REBOOT_CMD"
    assert reboot_done(drv) == pytest.approx(committed + 60)
    assert drv.node.boot_reason == BootReason.REBOOT_CMD
    assert drv.node.running_version == "2.0" and zb(drv)["IMGB"].state == PS.ACTIVE


# ------------------------------------------------------------------------------ §7 device state --
def test_device_state_precedence() -> None:
    """§7: maintenance > updating > rebooting > ... > ONLINE > BOOTING."""
    drv = driver()
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running")
    assert drv.node.device_state() == ZDeviceState.BOOTING  # no config yet
    drv.run_until(lambda: drv.node.zedagent.config_received)
    assert drv.node.device_state() == ZDeviceState.ONLINE
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: drv.node.nodeagent.rebooting is not None)
    assert zb(drv)["IMGB"].state == PS.UPDATING
    assert drv.node.device_state() == ZDeviceState.BASEOS_UPDATING  # updating beats rebooting
    drv.run_until(lambda: drv.node.nodeagent.testing and drv.node.nodeagent.test_start is not None)
    assert drv.node.device_state() == ZDeviceState.BASEOS_UPDATING  # current inprogress
    drv.ctrl.set(maintenance=True)
    drv.run_until(lambda: drv.node.zedagent.maintenance)
    assert drv.node.device_state() == ZDeviceState.MAINTENANCE_MODE  # maintenance beats updating
    assert zb(drv).current_partition.state == PS.INPROGRESS
    drv.ctrl.set(maintenance=False)
    drv.run_until(lambda: not drv.node.zedagent.maintenance)
    drv.run_until(lambda: drv.has_note("update_committed"))
    assert drv.node.device_state() == ZDeviceState.ONLINE
    drv.ctrl.set(reboot=1)
    drv.run_until(lambda: drv.node.persist.reboot_seen == 1)
    drv.ctrl.set(reboot=2)
    drv.run_until(lambda: drv.node.nodeagent.rebooting is not None)
    assert drv.node.device_state() == ZDeviceState.REBOOTING


def test_restart_counter_increments_on_every_boot() -> None:
    """§7: restartCounter is incremented on every boot."""
    drv = online(driver())
    assert drv.node.persist.restart_counter == 1 and drv.node.boot_reason == BootReason.FIRST
    for n in range(2, 5):
        drv.power_off()
        drv.run_for(5)
        drv.power_on()
        drv.run_until(lambda: drv.node.phase == "running")
        assert drv.node.persist.restart_counter == n
        assert drv.node.boot_reason == BootReason.POWER_FAIL
    drv.run_for(30)
    assert drv.ctrl.info["restart_counter"] == 4


# ---------------------------------------------------------------------------- §4 connectivity loss --
def test_reboot_no_network_at_its_minimum_reboots_with_disconnect() -> None:
    """§4: no Success/TemporaryFail for timer.reboot.no.network -> BootReasonDisconnect; §6 min 120."""
    drv = driver()
    drv.ctrl.item("timer.reboot.no.network", 119)  # below the minimum: rejected, previous value kept
    online(drv)
    assert drv.node.item("timer.reboot.no.network") == 604800
    assert "timer.reboot.no.network" in drv.node.report(drv.now)["config_items_errors"]
    drv.ctrl.item("timer.reboot.no.network", 120)
    drv.run_until(lambda: drv.node.item("timer.reboot.no.network") == 120)
    drv.run_for(100)
    down_at = drv.now
    drv.ctrl.down = "timeout"
    scheduled = drv.run_until(lambda: drv.node.nodeagent.rebooting is not None)
    assert drv.node.nodeagent.rebooting[0] == BootReason.DISCONNECT
    # counted from the last nodeagent tick before the first failed poll (§3 step 7, §4)
    reachable = _tick_before(drv, _first_failed_poll(drv, down_at))
    assert 120 < scheduled - reachable <= 130 and on_grid(drv, scheduled)
    assert reboot_done(drv) == pytest.approx(scheduled + 60)
    assert drv.resets[-1][1] == BootReason.DISCONNECT
    assert drv.node.boot_reason == BootReason.DISCONNECT


def test_controller_outage_below_reboot_no_network_does_not_reboot() -> None:
    drv = online(driver())
    drv.ctrl.down = "refused"
    drv.run_for(6 * 3600)
    assert drv.node.zedagent.config_status == ConfigGetStatus.FAIL  # ECONNREFUSED outside an update: Fail
    assert not drv.has_note("reboot_scheduled")
    drv.ctrl.down = None
    drv.run_for(61)
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS


# ------------------------------------------------------------------------------------ §4 networking --
def _lr_node(enabled: bool) -> Driver:
    ports = (Port("eth0", "ethernet", True, 0, 12.5e6), Port("eth1", "ethernet", False, 0, 12.5e6))
    drv = Driver(make_node(ports=ports))
    drv.ctrl.item("timer.config.interval", 10)
    if enabled:
        drv.ctrl.item("network.fallback.any.eth", "enabled")
    return online(drv)


def test_two_port_test_failures_fall_back_to_the_last_resort_dpc() -> None:
    """§4: two consecutive failures -> re-verify the list -> lower-priority (last-resort) DPC."""
    drv = _lr_node(enabled=True)
    assert [k for k, _p in drv.node.nim.dpc_list()] == ["zedagent", "lastresort"]
    assert drv.node.nim.dpc_list()[1][1] == ("eth0", "eth1")  # DHCP on all Ethernet ports
    drv.run_until(lambda: len(drv.sent("ping")) >= 1)
    drv.ctrl.port_down = {"eth0"}
    down = drv.now
    drv.run_until(lambda: drv.has_note("dpc_switch"))
    switched = drv.now
    tests = [t for t, s in drv.sent("ping", since=down + 1e-9)]
    assert len([t for t in tests if t < switched - 15]) == 2, "two periodic tests failed first"
    assert np.diff(tests[:2]).tolist() == pytest.approx([300.0])  # timer.port.testinterval
    assert drv.notes_of("dpc_switch")[0][1] == {"frm": 0, "to": 1, "key": "lastresort"}
    assert drv.node.nim.dpc_index == 1 and drv.node.nim.dpc_state == DPCState.SUCCESS
    drv.run_for(30)
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS
    assert set(drv.sent("config", since=switched)[-1][1].ports) == {"eth0", "eth1"}
    assert drv.ctrl.info["dpc_index"] == 1  # currentIndex > 0 = fallback (§4 reporting)
    # §4: every timer.port.testbetterinterval (600 s) index 0 is retried
    drv.ctrl.port_down = set()
    back = drv.run_until(lambda: drv.node.nim.dpc_index == 0)
    assert switched + 600 - 1 <= back <= switched + 600 + 1


def test_one_port_test_failure_is_not_enough_and_no_last_resort_when_disabled() -> None:
    drv = _lr_node(enabled=False)
    assert [k for k, _p in drv.node.nim.dpc_list()] == ["zedagent"]  # default disabled (§4, §6)
    drv.run_until(lambda: len(drv.sent("ping")) >= 1)
    drv.ctrl.port_down = {"eth0"}
    drv.run_until(lambda: len(drv.sent("ping")) >= 2)
    drv.run_for(20)
    assert drv.node.nim.port_fails == 1 and drv.node.nim.reverify is None and drv.node.nim.dpc_index == 0
    drv.run_for(600)
    assert drv.node.nim.dpc_index == 0 and drv.node.nim.dpc_state == DPCState.FAIL
    assert not drv.has_note("dpc_switch")


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_a_5xx_ping_is_a_remote_temporary_failure_and_the_dpc_is_kept(code: int) -> None:
    """§4 (P:dpcmanager/verify.go): any HTTP 5xx on the connectivity test keeps the DPC in
    RemoteWait and counts as working: an overloaded controller never makes devices switch DPC."""
    drv = _lr_node(enabled=True)
    drv.run_until(lambda: len(drv.sent("ping")) >= 1)
    drv.ctrl.override["ping"] = lambda s, t: (code, {}, 0.01)
    drv.run_for(3 * 300 + 30)
    assert len(drv.sent("ping")) >= 3
    assert not drv.has_note("dpc_switch") and drv.node.nim.dpc_index == 0
    assert drv.node.nim.dpc_state == DPCState.REMOTE_WAIT and drv.node.nim.port_fails == 0


def test_a_device_whose_dpcs_all_fail_parks_at_index_0() -> None:
    """§4: re-verify walks the list; when no DPC works the device stays on index 0."""
    drv = _lr_node(enabled=True)
    drv.run_until(lambda: len(drv.sent("ping")) >= 1)
    drv.ctrl.port_down = {"eth0"}
    drv.run_until(lambda: drv.node.nim.dpc_index == 1)  # on the last-resort DPC
    drv.ctrl.port_down = {"eth0", "eth1"}
    drv.run_until(lambda: drv.node.nim.dpc_index == 0, limit=3 * 300 + 60)
    assert drv.node.nim.dpc_state == DPCState.FAIL


@pytest.mark.parametrize("code", [400, 404, 503])
def test_temporary_fail_needs_the_test_boot_not_only_an_updating_other_partition(code: int) -> None:
    """§1: TemporaryFail ("during an update") means zedagent's updateInprogress: the current
    partition is inprogress. 400/404 and 503 are TemporaryFail there, plain Fail before it."""
    drv = online(driver())
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)
    drv.ctrl.override["config"] = lambda s, t: (code, {}, 0.01)
    drv.run_until(lambda: drv.has_note("config_fail", since=drv.now - 1e-9) or drv.node.phase != "running", limit=120)
    if drv.node.phase == "running":
        assert drv.node.zedagent.config_status == ConfigGetStatus.FAIL  # other=updating only: not an update yet
    drv.run_until(lambda: drv.node.phase == "running" and drv.node.nodeagent.testing, limit=600)
    # the boot's first failed poll reads the saved config (§1: ReadSaved); the next is TemporaryFail
    drv.run_until(lambda: len(drv.notes_of("config_fail", since=drv.node.agents_at)) >= 2, limit=600)
    assert drv.node.zedagent.config_status == ConfigGetStatus.TEMPORARY_FAIL


# ---------------------------------------------------------------------------------- §5 attestation --
def test_attestation_fsm_nonce_quote_store_keys_complete() -> None:
    drv = driver()
    trace = drv.watch(lambda n: n.attest.state)
    online(drv)
    assert [v for _t, v in trace] == [
        AttestState.UNSPECIFIED,
        AttestState.NONCE_WAIT,
        AttestState.TPM_QUOTE_WAIT,
        AttestState.ATTEST_WAIT,
        AttestState.ATTEST_ESCROW_WAIT,
        AttestState.COMPLETE,
    ]
    # zedagent posts the device's certs (ATTEST_REQ_CERT) at its start, beside the attestation
    assert [s.body["type"] for _t, s in drv.sent("attest")] == ["CERT", "NONCE", "QUOTE", "STORE_KEYS"]
    quote = drv.sent("attest")[2][1].body
    assert sorted(quote["pcrs"]) == list(range(16))  # the quote covers PCR 0-15 (§5)
    assert drv.node.attest.token == drv.ctrl.token
    drv.run_for(60)
    assert drv.sent("config")[-1][1].body["token"] == drv.ctrl.token  # integrity_token in every request
    assert drv.ctrl.escrow == drv.node.persist.vault_key  # escrow stored


@pytest.mark.parametrize("failure", ["QUOTE_FAILED", "NONCE_MISMATCH", "http-500"])
def test_attestation_failure_waits_exactly_15s_then_restarts(failure: str) -> None:
    """§5: QUOTE_FAILED / NONCE_MISMATCH / request errors -> RESTART_WAIT, fixed 15 s retry."""
    drv = driver()
    if failure == "http-500":
        drv.ctrl.override["attest"] = lambda s, t: (500, {}, LAT) if s.body["type"] == "QUOTE" else None
    else:
        drv.ctrl.quote_code = failure
    drv.power_on()
    drv.run_until(lambda: drv.node.attest.state == AttestState.RESTART_WAIT)
    drv.run_for(200)
    failed = [t for t, k, _s, b in drv.responses if k == "attest" and t > 0 and _is_quote_answer(drv, t)]
    nonces = [t for t, s in drv.sent("attest") if s.body["type"] == "NONCE"]
    assert len(nonces) >= 10
    retries = nonces[1:]
    assert [n - f for f, n in zip(failed, retries)] == pytest.approx([15.0] * len(retries))
    assert drv.node.attest.state in (AttestState.RESTART_WAIT, AttestState.NONCE_WAIT, AttestState.TPM_QUOTE_WAIT, AttestState.ATTEST_WAIT)
    drv.ctrl.quote_code = "SUCCESS"
    drv.ctrl.override.clear()
    drv.run_for(60)
    assert drv.node.attest.state == AttestState.COMPLETE


def _is_quote_answer(drv: Driver, t: float) -> bool:
    sent_quotes = [ts + LAT for ts, s in drv.sent("attest") if s.body["type"] == "QUOTE"]
    return any(abs(t - q) < 1e-9 for q in sent_quotes)


def test_config_403_after_a_quote_restarts_attestation() -> None:
    """§1/§5: 403 on /config restarts a completed attestation if a quote was ever sent: the FSM
    goes to RESTART_WAIT and sends a new NONCE 15 s later (attest.go handleRestartAtStateComplete)."""
    drv = online(driver())
    n = len(drv.sent("attest"))
    drv.ctrl.override["config"] = lambda s, t: (403, {}, LAT)
    drv.run_until(lambda: len(drv.sent("attest")) > n)
    t403 = [t for t, k, s, _b in drv.responses if k == "config" and s == 403][0]
    assert drv.sent("attest")[n][0] == pytest.approx(t403 + 15.0)
    assert drv.sent("attest")[n][1].body["type"] == "NONCE"


def test_config_403_while_attesting_does_not_restart_it_again() -> None:
    """§1/§5: configs that carried the token being replaced get 403 while the new attestation
    runs; they do not restart the running cycle (at most one restart is queued for its end)."""
    drv = online(driver())
    n = len(drv.sent("attest"))
    drv.ctrl.override["config"] = lambda s, t: (403, {}, LAT)
    # a slow NONCE answer (a slow link): several config polls get 403 meanwhile
    drv.ctrl.override["attest"] = lambda s, t: None if s.body["type"] != "NONCE" else (201, {"type": "NONCE", "nonce": "n1"}, 200.0)
    drv.run_until(lambda: len(drv.sent("attest")) > n)
    t0 = drv.sent("attest")[n][0]
    drv.run_for(190)
    assert len([1 for t, k, s, _b in drv.responses if k == "config" and s == 403 and t > t0]) >= 2
    assert [s.body["type"] for _t, s in drv.sent("attest")[n:]] == ["NONCE"]


def test_no_tpm_quote_without_pcrs_and_escrow_skipped() -> None:
    """§5: no TPM -> no PCRs in the quote, escrow skipped, COMPLETE; vault on soft keys."""
    drv = driver(tpm=False)
    online(drv)
    kinds = [s.body["type"] for _t, s in drv.sent("attest")]
    assert kinds == ["NONCE", "QUOTE"]
    quote = drv.sent("attest")[1][1].body
    assert quote["pcrs"] == {} and quote["tpm"] is False
    assert drv.node.attest.state == AttestState.COMPLETE and drv.node.attest.vault_unlocked
    drv.run_for(3600)
    assert "STORE_KEYS" not in [s.body["type"] for _t, s in drv.sent("attest")]


# --------------------------------------------------------------------------------------- §5 vault --
def test_vault_locked_after_tamper_enters_maintenance_after_the_cutoff() -> None:
    """§5: PCR mismatch + QUOTE_FAILED -> vault locked; after timer.vault.ready.cutoff (300 s, from
    the later of vaultmgr's report and the first config Success) outside an update -> VAULT_LOCKED_UP."""
    drv = online(driver())
    assert drv.node.attest.vault_unlocked
    drv.call("tamper", "firmware")
    drv.power_off()
    drv.run_for(5)
    drv.ctrl.quote_code = "QUOTE_FAILED"
    drv.power_on()
    drv.run_until(lambda: drv.node.phase == "running")
    assert not drv.node.attest.vault_unlocked and drv.has_note("vault_locked")
    drv.run_until(lambda: drv.node.zedagent.first_success is not None)
    base = max(drv.node.attest.vault_at, drv.node.zedagent.first_success)
    drv.run_until(lambda: drv.node.attest.state == AttestState.RESTART_WAIT)
    entered = drv.run_until(lambda: bool(drv.node.zedagent.maintenance))
    assert drv.node.zedagent.maintenance == {MaintenanceModeReason.VAULT_LOCKED_UP}
    assert 300 <= entered - base <= 310 and on_grid(drv, entered)
    assert drv.node.device_state() == ZDeviceState.MAINTENANCE_MODE
    assert not drv.has_note("reboot_scheduled", since=base)
    drv.run_for(60)
    assert drv.ctrl.info["maintenance"] == ["VAULT_LOCKED_UP"] and drv.ctrl.info["vault"] == "locked"


def test_vault_not_ready_during_the_update_test_is_a_vault_failed_fallback() -> None:
    """§3 step 7 / §5: vault not ready within the cutoff during the test -> BootReasonVaultFailure."""
    drv = driver()
    online(drv)
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)
    drv.ctrl.quote_code = "QUOTE_FAILED"  # the controller refuses the new image's quote
    drv.run_until(lambda: drv.node.phase == "running" and drv.node.nodeagent.testing)
    assert not drv.node.attest.vault_unlocked  # the update changed PCR 13, so the local unseal fails
    drv.run_until(lambda: drv.node.zedagent.first_success is not None)
    base = max(drv.node.attest.vault_at, drv.node.zedagent.first_success)
    scheduled = drv.run_until(lambda: drv.node.nodeagent.rebooting is not None)
    assert drv.node.nodeagent.rebooting[0] == BootReason.VAULT_FAILED
    assert 300 <= scheduled - base <= 310 and on_grid(drv, scheduled)
    assert reboot_done(drv) == pytest.approx(scheduled + 60)
    _assert_fell_back(drv, BootReason.VAULT_FAILED)
    assert drv.node.attest.vault_unlocked  # unsealed locally: the old image's PCRs still match the seal


def test_vault_unlocked_by_the_escrowed_key_after_an_update() -> None:
    """§5: the controller returns the escrowed key after a good quote; the device re-seals."""
    drv = driver()
    online(drv)
    start_update(drv)
    assert not drv.node.attest.vault_unlocked
    drv.run_until(lambda: drv.node.attest.vault_unlocked)
    assert drv.node.attest.state in (AttestState.ATTEST_ESCROW_WAIT, AttestState.COMPLETE)
    drv.run_until(lambda: drv.has_note("update_committed"))
    assert not drv.has_note("reboot_scheduled", since=drv.node.agents_at)


def test_vault_cutoff_does_not_start_before_the_first_config_success() -> None:
    drv = driver()
    online(drv)
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)
    # the controller answers every config and attest request of the test boot with 503
    drv.ctrl.override["config"] = lambda s, t: (503, {}, LAT)
    drv.ctrl.override["attest"] = lambda s, t: (503, {}, LAT)
    agents = drv.run_until(lambda: drv.node.phase == "running" and drv.node.nodeagent.testing)
    drv.run_for(1200)
    # no Success yet: the vault timer does not tick, and TemporaryFail keeps the fallback away
    assert drv.notes_of("reboot_scheduled", since=agents) == []
    assert zb(drv).current == "IMGB" and drv.node.nodeagent.testing and not drv.node.attest.vault_unlocked
    assert drv.node.zedagent.config_status == ConfigGetStatus.TEMPORARY_FAIL


# --------------------------------------------------------------------------------- measured boot --
def test_same_inputs_give_the_same_pcrs_and_tamper_changes_only_its_pcr() -> None:
    a, b = driver(seed=1), driver(seed=2)
    a.power_on()
    b.power_on()
    assert a.node.pcrs == b.node.pcrs  # same firmware, image, slot, config -> same PCRs
    first = dict(a.node.pcrs)
    a.power_off()
    a.power_on()
    assert a.node.pcrs == first  # and again on the next boot
    other = Driver(make_node(firmware="uefi:other:x86_64"))
    other.power_on()
    assert other.node.pcrs[0] != first[0]


@pytest.mark.parametrize("stage,pcr", [("firmware", 0), ("bootloader", 8), ("rootfs", 13), ("config", 14)])
def test_tamper_changes_its_pcr_and_the_quote(stage: str, pcr: int) -> None:
    """§1 / §5: firmware -> PCR 0, grub.cfg -> 8, rootfs -> 13, /config -> 14; the quote changes."""
    drv = online(driver())
    clean = next(s for _t, s in drv.sent("attest") if s.body["type"] == "QUOTE").body["pcrs"]
    drv.call("tamper", stage)
    drv.power_off()
    drv.power_on()
    drv.run_until(lambda: len([s for _t, s in drv.sent("attest") if s.body["type"] == "QUOTE"]) == 2)
    quote = [s for _t, s in drv.sent("attest") if s.body["type"] == "QUOTE"][1].body["pcrs"]
    assert {i for i in range(16) if quote[i] != clean[i]} == {pcr}
    assert not drv.node.attest.vault_unlocked  # sealed to the old PCRs (§5: sealing set includes 0, 8, 13, 14)


# ---------------------------------------------------------------------------------------- watchdog --
def test_hang_reboots_with_watchdog_hung_after_300s() -> None:
    """§7: touch file unchanged for 300 s -> reboot, BootReasonWatchdogHung."""
    drv = online(driver())
    drv.run_for(100)
    drv.call("hang", "zedagent")
    hung = drv.now
    n = len(drv.sends)
    drv.run_until(lambda: bool(drv.resets))
    assert drv.resets[0] == (pytest.approx(hung + 300.0), BootReason.WATCHDOG_HUNG)
    # a hung zedagent polls, reports and attests no more (nim's port test and loguploader are other agents)
    assert [s.kind for _t, s in drv.sends[n:] if s.kind not in ("ping", "logs")] == []
    drv.run_until(lambda: drv.node.phase == "running")
    assert drv.node.boot_reason == BootReason.WATCHDOG_HUNG


# -------------------------------------------------------------------------------------------- apps --
_SPEC_ORDER = [
    ZSwState.INITIAL, ZSwState.RESOLVING_TAG, ZSwState.RESOLVED_TAG, ZSwState.DOWNLOAD_STARTED,
    ZSwState.VERIFYING, ZSwState.VERIFIED, ZSwState.LOADING, ZSwState.DELIVERED, ZSwState.CREATING_VOLUME,
    ZSwState.CREATED_VOLUME, ZSwState.INSTALLED, ZSwState.AWAITNETWORKINSTANCE, ZSwState.START_DELAYED,
    ZSwState.BOOTING, ZSwState.RUNNING,
]  # §8 typical path


def _app(cpus: int, memory: int, size: int = 10 * MiB, kind: str = "vm") -> dict[str, Any]:
    return {"kind": kind, "cpus": cpus, "memory": memory, "size": size, "activate": True}


def test_apps_that_fit_run_and_one_that_does_not_waits_installed_with_eves_error() -> None:
    """§8: states in order; memory is admitted at activation, VMM overhead included; a short app
    waits INSTALLED with "Remaining memory bytes ..." and the running apps are undisturbed; no vCPU
    check (8 vCPUs on 4 cores run)."""
    drv = driver(cores=4, memory=2 * GiB, reserved=768 * MiB)
    online(drv)
    trace = drv.watch(lambda n: n.zedmanager.apps.get("telemetry", {}).get("state"))
    drv.ctrl.set(apps={"telemetry": _app(1, 256 * MiB, 80 * MiB, "container")})
    drv.run_until(lambda: drv.node.zedmanager.apps.get("telemetry", {}).get("state") == ZSwState.RUNNING)
    states = [v for _t, v in trace if v is not None]
    assert states[-1] == ZSwState.RUNNING
    positions = [_SPEC_ORDER.index(s) for s in states]
    assert positions == sorted(positions), "states follow the §8 order"
    assert ZSwState.DOWNLOAD_STARTED in states and ZSwState.BOOTING in states

    apps = dict(drv.ctrl.config["apps"])
    apps["big-vm"] = _app(8, 512 * MiB)
    drv.ctrl.set(apps=apps)
    drv.run_until(lambda: drv.node.zedmanager.apps.get("big-vm", {}).get("state") == ZSwState.RUNNING)
    assert drv.node.zedmanager.apps["big-vm"]["err"] == ""

    apps["hungry"] = _app(2, 512 * MiB, kind="container")
    drv.ctrl.set(apps=apps)
    drv.run_until(lambda: "Remaining" in drv.node.zedmanager.apps.get("hungry", {}).get("err", ""))
    hungry = drv.node.zedmanager.apps["hungry"]
    big_need = 512 * MiB + 350 * MiB + (512 * 1024 * 1024 * 25 // 1000) + 20 * MiB + 8 * 3 * MiB
    remaining = 2 * GiB - 768 * MiB - 256 * MiB - big_need
    assert hungry["state"] == ZSwState.INSTALLED
    assert hungry["err"] == f"Remaining memory bytes {remaining} app instance needs {512 * MiB}"
    assert drv.node.zedmanager.apps["telemetry"]["state"] == ZSwState.RUNNING  # undisturbed
    drv.run_for(30)
    assert drv.node.zedmanager.apps["hungry"]["state"] == ZSwState.INSTALLED
    assert drv.ctrl.info["apps"]["hungry"] == {"state": "INSTALLED", "err": hungry["err"]}
