"""The agents' phase tables (eve/fsm.py): a missing (phase, event) pair is a loud error, and every
row of the attestation and power tables is reached by a real run of the node, so no row is dead.

The attestation rows are EVE's (P:attest/attest.go ``transitions``); the runs below drive them
with the fake controller of test_node_rules: a good cycle, a refused quote, a failed escrow, a
request without an answer, a config 403 at COMPLETE, in RESTART_WAIT and in every phase of a
slow cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_node_rules import GiB, MiB, Driver, FakeController, driver, online

from eve.agents.attest import ATTEST_FSM, AttestEvent
from eve.agents.baseosmgr import ENTRY, EntryEvent
from eve.agents.client import ONBOARDING, OnboardEvent, Onboarding
from eve.agents.nodeagent import NODE_OPERATION, REBOOT, Procedure
from eve.agents.zedmanager import APP, AppEvent
from eve.enums import AttestState, PartitionState, ZSwState
from eve.images import CRASH_ON_BOOT
from eve.fsm import STAY, Transitions, TransitionError
from eve.power import POWER, PowerEvent
from eve.vocab import Phase


def test_a_pair_the_table_lacks_raises_and_names_table_event_and_phase() -> None:
    with pytest.raises(TransitionError, match=r"power: no transition for event PANIC in phase OFF"):
        POWER.fire(Phase.OFF, PowerEvent.PANIC)
    with pytest.raises(TransitionError, match=r"attest: no transition for event NONCE_RECVD in phase COMPLETE"):
        ATTEST_FSM.fire(AttestState.COMPLETE, AttestEvent.NONCE_RECVD)


def test_stay_is_an_expected_event_that_changes_nothing() -> None:
    assert POWER.fire(Phase.RUNNING, PowerEvent.POWER_ON) == Phase.RUNNING
    assert POWER.allows(Phase.RUNNING, PowerEvent.POWER_ON) and not POWER.moves(Phase.RUNNING, PowerEvent.POWER_ON)
    assert POWER.fire(Phase.OFF, PowerEvent.POWER_ON) == Phase.BOOTING and POWER.moves(Phase.OFF, PowerEvent.POWER_ON)
    assert ATTEST_FSM.fire(AttestState.ATTEST_WAIT, AttestEvent.RESTART) == AttestState.ATTEST_WAIT


def test_a_bricked_node_leaves_only_by_a_power_cut() -> None:
    for event in PowerEvent:
        if event is PowerEvent.POWER_CUT:
            assert POWER.fire(Phase.BRICKED, event) == Phase.OFF
        elif POWER.allows(Phase.BRICKED, event):
            assert POWER.fire(Phase.BRICKED, event) == Phase.BRICKED
        else:
            with pytest.raises(TransitionError):
                POWER.fire(Phase.BRICKED, event)


@pytest.fixture
def fired(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[tuple[str, Any, Any]]]:
    """Every (table, phase, event) the node fires while the test runs."""
    seen: set[tuple[str, Any, Any]] = set()
    real = Transitions.fire

    def record(self: Transitions[Any, Any], phase: Any, event: Any) -> Any:
        seen.add((self.name, phase, event))
        return real(self, phase, event)

    monkeypatch.setattr(Transitions, "fire", record)
    yield seen


def _rows(table: Transitions[Any, Any]) -> set[tuple[str, Any, Any]]:
    return {(table.name, phase, event) for phase, event, _nxt in table}


def _attest_runs() -> None:
    drv = online(driver())  # a good cycle with escrow
    assert drv.node.attest.state == AttestState.COMPLETE
    # a config 403 at COMPLETE, and one more while the next cycle runs (remembered, then run)
    answered: list[int] = []

    def forbid_twice(send: Any, now: float) -> tuple[int, dict[str, Any], float] | None:
        if len(answered) < 2:
            answered.append(1)
            return 403, {}, 0.05
        return None

    drv.ctrl.override["config"] = forbid_twice
    drv.run(drv.now + 600)
    del drv.ctrl.override["config"]
    assert drv.notes_of("attest_restart")
    # a refused quote
    drv2 = driver()
    drv2.ctrl.quote_code = "QUOTE_FAILED"
    drv2.ctrl.override["config"] = lambda send, now: (403, {}, 0.05)  # lands in RESTART_WAIT too: dropped
    drv2.power_on()
    drv2.run(900)
    assert drv2.notes_of("attest_failed")
    # a failed escrow and a request without an answer
    drv3 = driver()
    store: list[int] = []

    def escrow_then_silence(send: Any, now: float) -> tuple[int, dict[str, Any], float] | None:
        kind = send.body.get("type")
        if kind == "STORE_KEYS" and not store:
            store.append(1)
            return 201, {"type": "STORE_KEYS", "code": "ITOKEN_MISMATCH"}, 0.05
        if kind == "NONCE" and len(store) == 1:
            store.append(2)
            return 503, {}, 0.05
        return None

    drv3.ctrl.override["attest"] = escrow_then_silence
    online(drv3)
    # without a TPM there is nothing to escrow
    online(driver(tpm=False))
    # slow attestation answers and a controller that answers every config 403: the restart
    # lands in each waiting phase (remembered), a quote and an escrow go unanswered once each
    drv4 = driver()
    failed: set[str] = set()

    def slow(send: Any, now: float) -> tuple[int, dict[str, Any], float] | None:
        kind = send.body.get("type")
        if kind in ("QUOTE", "STORE_KEYS") and kind not in failed and drv4.node.attest.quote_sent and drv4.node.attest.token:
            failed.add(kind)
            return 503, {}, 0.05
        return None

    ctrl = drv4.ctrl
    ctrl.override["attest"] = slow

    def delayed(send: Any, now: float) -> tuple[int, dict[str, Any], float]:
        status, body, latency = FakeController.__call__(ctrl, send, now)
        return status, body, (40.0 if send.kind == "attest" else latency)

    drv4.ctrl = delayed  # type: ignore[assignment]
    drv4.power_on()
    drv4.run(300)
    ctrl.override["config"] = lambda send, now: (403, {}, 0.05)
    drv4.run(3000)
    assert failed == {"QUOTE", "STORE_KEYS"}


def test_every_attestation_row_is_reached_by_a_real_run(fired: set[tuple[str, Any, Any]]) -> None:
    _attest_runs()
    assert _rows(ATTEST_FSM) <= fired, sorted(map(str, _rows(ATTEST_FSM) - fired))


def test_every_power_row_is_reached_by_a_real_run(fired: set[tuple[str, Any, Any]]) -> None:
    drv = online(driver())
    drv.power_on()  # already on
    drv.call("kernel_panic")
    assert drv.node.phase == Phase.REBOOTING
    drv.power_on()  # already on: the machine runs until the panic timeout resets it
    drv.run_until(lambda: drv.node.phase == Phase.BOOTING)
    drv.power_on()  # already on, booting
    drv.run_until(lambda: drv.node.phase == Phase.RUNNING)
    drv.call("kernel_panic")
    drv.power_off()  # a power cut while the panicked kernel waits
    drv.power_off()  # already off
    drv.power_on()
    drv.power_off()  # during the boot
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.running)
    drv.call("poweroff_cmd")
    drv.run_until(lambda: drv.node.phase == Phase.OFF, limit=900)
    assert drv.has_note("powered_off")
    drv.node.zboot["IMGA"].state = PartitionState.UNUSED  # nothing left to boot
    drv.node.zboot["IMGB"].state = PartitionState.UNUSED
    drv.power_on()
    assert drv.node.phase == Phase.BRICKED
    drv.power_on()  # already on, bricked
    drv.power_off()
    crashing = online(driver(next_behaviour=CRASH_ON_BOOT))
    crashing.power_off()  # a power cut while running
    crashing.power_on()
    crashing.run_until(lambda: crashing.node.attest.state == AttestState.COMPLETE)
    crashing.ctrl.update_to("next", "2.0")  # nodeagent reboots into it (a reset while running) ...
    crashing.run_until(lambda: crashing.has_note("crash"), limit=3600)  # ... and it dies booting
    assert _rows(POWER) <= fired, sorted(map(str, _rows(POWER) - fired))


def _entry(drv: Driver) -> ZSwState | None:
    e = drv.node.persist.bos
    return e["zsw"] if e else None


def test_the_base_os_entry_rows_are_reached_by_real_runs(fired: set[tuple[str, Any, Any]]) -> None:
    drv = online(driver())
    drv.ctrl.update_to("base", "1.0")  # the running version: a new entry settles at once
    drv.run(drv.now + 120)
    assert _entry(drv) == ZSwState.INSTALLED
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: _entry(drv) == ZSwState.DOWNLOAD_STARTED)
    drv.power_off()  # the download dies with the boot
    drv.power_on()
    drv.run_until(lambda: _entry(drv) == ZSwState.LOADING, limit=600)
    drv.power_off()  # and the write
    drv.power_on()
    drv.run_until(lambda: drv.node.nodeagent.testing, limit=600)  # written, rebooted into it
    drv.run_until(lambda: drv.has_note("update_committed"), limit=900)
    drv.power_off()  # a reboot of a settled entry
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.config_received, limit=600)
    held = online(driver())
    held.ctrl.update_to("next", "2.0", activate=False)  # delivered, not installed
    held.run_until(lambda: _entry(held) == ZSwState.DELIVERED, limit=600)
    held.power_off()
    held.power_on()
    held.run_until(lambda: held.node.zedagent.config_received, limit=600)
    failed = driver(write_error=1.0)  # the read-back fails: written, with its error
    online(failed)
    failed.ctrl.update_to("next", "2.0")
    failed.run_until(lambda: bool(failed.node.persist.bos and failed.node.persist.bos["err"]), limit=600)
    missing = _rows(ENTRY) - fired
    # Not reached by a run: a version settling while its download or write runs (the controller
    # would have to hand out the running version mid-download), a second download start for
    # an entry already downloading, and a reboot before the download ever started.
    allowed = {("base-OS entry", z, EntryEvent.SETTLED) for z in (ZSwState.DOWNLOAD_STARTED, ZSwState.DELIVERED, ZSwState.LOADING)}
    allowed |= {("base-OS entry", ZSwState.DOWNLOAD_STARTED, EntryEvent.DOWNLOAD_START),
                ("base-OS entry", ZSwState.INITIAL, EntryEvent.REBOOT)}
    assert missing <= allowed, sorted(map(str, missing - allowed))


def _app(memory: int = 256 * MiB, *, size: int = 50 * MiB, activate: bool = True) -> dict[str, Any]:
    return {"kind": "container", "cpus": 1, "memory": memory, "size": size, "activate": activate}


def _app_state(drv: Driver, name: str) -> ZSwState | None:
    app = drv.node.zedmanager.apps.get(name)
    return app["state"] if app else None


def test_the_app_rows_are_reached_by_real_runs(fired: set[tuple[str, Any, Any]]) -> None:
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    # one runs, one is too big to fit, one is not to be activated; then a reboot brings each back
    drv.ctrl.set(apps={"run": _app(), "big": _app(4 * GiB), "off": _app(activate=False)})
    drv.run_until(lambda: _app_state(drv, "run") == ZSwState.RUNNING and _app_state(drv, "off") == ZSwState.HALTED
                  and bool(drv.node.zedmanager.apps.get("big", {}).get("err")), limit=900)
    drv.power_off()
    drv.power_on()
    drv.run_until(lambda: _app_state(drv, "run") == ZSwState.RUNNING and _app_state(drv, "big") == ZSwState.INSTALLED
                  and _app_state(drv, "off") == ZSwState.HALTED, limit=900)
    # a config without them: each halts from where it is (a halted one is deleted at once); with
    # polls every 1.5-5 s, a big app is cut while it downloads and while its volume is created
    drv.ctrl.item("timer.config.interval", 5)
    drv.ctrl.set(apps={})
    drv.run_until(lambda: not drv.node.zedmanager.apps, limit=900)
    for state in (ZSwState.DOWNLOAD_STARTED, ZSwState.CREATING_VOLUME):
        name = f"cut-{state.name.lower()}"
        drv.ctrl.set(apps={name: _app(size=2 * GiB)})
        drv.run_until(lambda: _app_state(drv, name) == state, limit=900)
        drv.ctrl.set(apps={})
        drv.run_until(lambda: name not in drv.node.zedmanager.apps, limit=900)
        assert drv.notes_of("app_removed")[-1][1]["app"] == name
    # a shutdown: a running app halts, one still downloading stays put
    drv.ctrl.set(apps={"up": _app()}, shutdown=1)  # the first counter is only stored
    drv.run_until(lambda: _app_state(drv, "up") == ZSwState.RUNNING, limit=900)
    drv.ctrl.set(apps={"up": _app(), "late": _app(size=2 * GiB)})
    drv.run_until(lambda: _app_state(drv, "late") == ZSwState.DOWNLOAD_STARTED, limit=900)
    drv.ctrl.set(shutdown=2)
    drv.run_until(lambda: drv.has_note("all_domains_halted"), limit=900)
    assert _app_state(drv, "up") == ZSwState.HALTED and _app_state(drv, "late") == ZSwState.HALTED
    # two apps admitted while the check is off; with it on again, after a reboot the second waits
    # for memory from the start of its boot; once not to be activated, it stays halted after the next
    two = online(driver(memory=4 * GiB, reserved=1 * GiB))
    two.ctrl.item("memory.apps.ignore.check", True)
    two.ctrl.set(apps={"a": _app(2 * GiB), "b": _app(2 * GiB)})
    two.run_until(lambda: _app_state(two, "a") == _app_state(two, "b") == ZSwState.RUNNING, limit=900)
    two.ctrl.item("memory.apps.ignore.check", False)
    two.run(two.now + 120)
    two.power_off()
    two.power_on()
    two.run_until(lambda: _app_state(two, "a") == ZSwState.RUNNING and _app_state(two, "b") == ZSwState.INSTALLED, limit=900)
    assert two.node.zedmanager.apps["b"]["err"]
    two.ctrl.set(apps={"a": _app(2 * GiB), "b": _app(2 * GiB, activate=False)})
    two.run(two.now + 120)
    two.power_off()
    two.power_on()
    two.run_until(lambda: _app_state(two, "a") == ZSwState.RUNNING and _app_state(two, "b") == ZSwState.HALTED, limit=900)
    # domainmgr's CPU pinning (4 cores, one EVE's): a refusal leaves an app INSTALLED; after a reboot an
    # installed app whose new config pins CPUs another app took first goes from INITIAL to INSTALLED
    pin = online(driver())
    pinned = {**_app(), "cpus": 2, "pin_cpus": True}
    pin.ctrl.set(apps={"a": pinned, "b": {**_app(), "cpus": 2}, "c": {**_app(), "cpus": 3, "pin_cpus": True}})
    pin.run_until(lambda: _app_state(pin, "b") == ZSwState.RUNNING and bool(pin.node.zedmanager.apps.get("c", {}).get("err")), limit=900)
    pin.ctrl.set(apps={"a": pinned, "b": pinned})
    pin.run(pin.now + 120)
    pin.power_off()
    pin.power_on()
    pin.run_until(lambda: _app_state(pin, "b") == ZSwState.INSTALLED and bool(pin.node.zedmanager.apps["b"]["err"]), limit=900)
    missing = _rows(APP) - fired
    # Not reached: a config removal or a node operation that finds an app in a phase of a second
    # or two (verify, load, boot) or before its first step; a node operation that finds an app
    # installed, creating its volume or halted.
    short = (ZSwState.INITIAL, ZSwState.VERIFYING, ZSwState.LOADING, ZSwState.BOOTING)
    allowed = {("app", z, AppEvent.CONFIG_GONE) for z in short}
    allowed |= {("app", z, AppEvent.NODE_HALT) for z in short + (ZSwState.CREATING_VOLUME, ZSwState.INSTALLED, ZSwState.HALTED)}
    assert missing <= allowed, sorted(map(str, missing - allowed))


def test_every_reboot_and_node_operation_row_is_reached_by_real_runs(fired: set[tuple[str, Any, Any]]) -> None:
    drv = online(driver())
    drv.ctrl.set(apps={"up": _app()}, shutdown=1)  # the first shutdown counter is only stored
    drv.run_until(lambda: _app_state(drv, "up") == ZSwState.RUNNING, limit=900)
    drv.ctrl.set(reboot=1)  # a reboot: wait, halt the apps, reset
    drv.run_until(lambda: drv.node.nodeagent.reboot_step == Procedure.HALTING, limit=300)
    drv.run_until(lambda: bool(drv.resets), limit=600)
    drv.run_until(lambda: drv.node.zedagent.config_received and _app_state(drv, "up") == ZSwState.RUNNING, limit=900)
    assert drv.node.boot_reason.name == "REBOOT_CMD"
    # a shutdown, and a power-off when it is waiting, halting, done: each powers the device off
    for counter, step in ((2, Procedure.WAITING), (3, Procedure.HALTING), (4, Procedure.SHUT_DOWN)):
        drv.ctrl.set(shutdown=counter)
        drv.run_until(lambda: drv.node.nodeagent.node_op_step == step, limit=900)
        drv.call("poweroff_cmd")
        drv.run_until(lambda: drv.node.phase == Phase.OFF, limit=900)
        drv.power_on()
        drv.run_until(lambda: drv.node.zedagent.config_received and _app_state(drv, "up") == ZSwState.RUNNING, limit=900)
        assert drv.node.boot_reason.name == "POWEROFF_CMD"
    for table in (REBOOT, NODE_OPERATION):
        assert _rows(table) <= fired, sorted(map(str, _rows(table) - fired))


def test_the_onboarding_rows_are_reached_by_real_runs(fired: set[tuple[str, Any, Any]]) -> None:
    drv = driver()
    certs_fail = [503]
    uuid_fails = [404, 404]  # the first attempt fails twice: back off, register again

    def certs(send: Any, now: float) -> tuple[int, dict[str, Any], float] | None:
        return (certs_fail.pop(), {}, 0.05) if certs_fail else None

    def uuid(send: Any, now: float) -> tuple[int, dict[str, Any], float] | None:
        return (uuid_fails.pop(), {}, 0.05) if uuid_fails else None

    drv.ctrl.override["certs"] = certs
    drv.ctrl.override["uuid"] = uuid
    online(drv)
    assert drv.node.client.phase == Onboarding.DONE
    once = driver()
    once_fails = [404]  # the second uuid of the attempt works
    once.ctrl.override["uuid"] = lambda send, now: (once_fails.pop(), {}, 0.05) if once_fails else None
    online(once)
    # a cached UUID and no controller at 5 s: done without it; the certs answer still in flight
    # (a timeout) then finds nobody
    drv.ctrl.down = "timeout"
    drv.power_off()
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.running, limit=120)
    drv.run(drv.now + 30)
    # the same while backing off: certs answered 503 at once, the retry timer fires after the fast path
    drv.ctrl.down = None
    drv.ctrl.override["certs"] = lambda send, now: (503, {}, 0.05)
    drv.power_off()
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.running, limit=120)
    drv.run(drv.now + 30)
    missing = _rows(ONBOARDING) - fired
    # Not reached: the fast path after the certs worked, which needs a DPC still under verification
    # (certs success makes the DPC Success otherwise), and the late answers that would bring.
    later = (Onboarding.REGISTER, Onboarding.UUID, Onboarding.UUID_AGAIN, Onboarding.BACKOFF)
    allowed = {("onboarding", o, OnboardEvent.FAST_PATH) for o in later}
    allowed |= {("onboarding", Onboarding.DONE, e) for e in (OnboardEvent.CERTS_OK, OnboardEvent.REGISTER_ANSWERED,
                                                             OnboardEvent.UUID_OK, OnboardEvent.UUID_FAILED)}
    assert missing <= allowed, sorted(map(str, missing - allowed))


def test_rows_name_only_phases_the_tables_know() -> None:
    for phase, event, nxt in POWER:
        assert isinstance(phase, Phase) and isinstance(event, PowerEvent) and (nxt is STAY or isinstance(nxt, Phase))
    for phase, event, nxt in ATTEST_FSM:
        assert isinstance(phase, AttestState) and isinstance(event, AttestEvent)
        assert nxt is STAY or isinstance(nxt, AttestState)
    assert AttestState.TPM_ESCROW_WAIT not in {p for p, _e, _n in ATTEST_FSM}  # folded into the escrow request
    for phase, event, nxt in ENTRY:
        assert isinstance(phase, ZSwState) and isinstance(event, EntryEvent) and (nxt is STAY or isinstance(nxt, ZSwState))
    assert ZSwState.VERIFYING not in {p for p, _e, _n in ENTRY}  # folded into the download


def test_the_download_rows_are_reached_by_real_runs(fired: set[tuple[str, Any, Any]]) -> None:
    from eve.download import DOWNLOAD

    drv = online(driver())
    drv.ctrl.item("blob.download.max.retries", 1)
    drv.ctrl.item("timer.download.retry", 60)
    drv.ctrl.item("timer.download.stalled", 30)
    drv.ctrl.set(apps={"ok": _app(), "bad": {**_app(), "download": "corrupt"}})  # verified; verify failed after a retry
    drv.run_until(lambda: _app_state(drv, "ok") == ZSwState.RUNNING
                  and drv.node.downloader.downloads.get("app/bad") is not None
                  and drv.node.downloader.downloads["app/bad"].state == "verify_failed", limit=900)
    drv.ctrl.set(apps={"ok": _app(), "bad": {**_app(), "download": "corrupt"}, "slow": _app(size=500 * MiB)})
    drv.run_until(lambda: _app_state(drv, "slow") == ZSwState.DOWNLOAD_STARTED, limit=300)
    drv.apply(drv.node.links({"eth0", "eth1"}, drv.now))  # the links go: no progress, a stall, retries fail
    drv.run(drv.now + 400)
    assert drv.node.downloader.downloads["app/slow"].state == "error"
    drv.apply(drv.node.links(set(), drv.now))
    drv.run_until(lambda: _app_state(drv, "slow") == ZSwState.RUNNING, limit=1800)
    assert _rows(DOWNLOAD) <= fired, sorted(map(str, _rows(DOWNLOAD) - fired))
