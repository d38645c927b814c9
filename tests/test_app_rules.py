"""zedmanager's memory admission of app instances (spec §8).

EVE checks memory at activation (after download and volumes), counts the VMM overhead of a VM,
leaves a short app INSTALLED with appErr and retries it when another app's memory is freed
(P:cmd/zedmanager/updatestatus.go `doActivate`, memorysizemgmt.go `getRemainingMemory`,
zedmanager.go `checkRetry`; P:hypervisor/vmm_overhead.go). No vCPU check exists.
"""

from __future__ import annotations

from typing import Any

from test_node_rules import GiB, MiB, Driver, driver, online

from eve import admission
from eve.enums import ZSwState


def _app(memory: int, *, kind: str = "vm", cpus: int = 1, size: int = 10 * MiB) -> dict[str, Any]:
    return {"kind": kind, "cpus": cpus, "memory": memory, "size": size, "activate": True}


def _vm_need(memory: int, cpus: int) -> int:
    """EVE's estimate for a KVM domain without passthrough: 350 MiB + 2.5 % RAM + 20 MiB + 3 MiB/vCPU."""
    return memory + 350 * MiB + (memory // 1024) * 1024 * 25 // 1000 + 20 * MiB + cpus * 3 * MiB


def _state(drv: Driver, name: str) -> ZSwState | None:
    return drv.node.zedmanager.apps.get(name, {}).get("state")


def _deploy(drv: Driver, **apps: dict[str, Any]) -> None:
    drv.ctrl.set(apps={**drv.ctrl.config["apps"], **apps})


def test_memory_is_checked_at_activation_so_the_first_to_finish_its_download_wins() -> None:
    """§8: the check is in doActivate, after download and volumes, not when the config arrives.
    Both apps arrive in one config; only one fits (3 GiB free). The one with the small image is
    installed first and runs; the other waits INSTALLED, with the error set only after its own
    download and volume creation."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    slow = drv.watch(lambda n: n.zedmanager.apps.get("a-slow", {}).get("state"))
    _deploy(
        drv,
        **{
            "a-slow": _app(2 * GiB, kind="container", size=2 * GiB),
            "b-fast": _app(2 * GiB, kind="container", size=10 * MiB),
        },
    )
    drv.run_until(lambda: bool(drv.node.zedmanager.apps.get("a-slow", {}).get("err")))
    assert _state(drv, "b-fast") == ZSwState.RUNNING
    assert _state(drv, "a-slow") == ZSwState.INSTALLED
    states = [s for _t, s in slow if s is not None]
    assert ZSwState.DOWNLOAD_STARTED in states and ZSwState.CREATING_VOLUME in states  # got that far
    assert drv.node.zedmanager.apps["a-slow"]["err"] == f"Remaining memory bytes {1 * GiB} app instance needs {2 * GiB}"
    errors = drv.notes_of("app_error")
    installed_at = next(t for t, s in slow if s == ZSwState.INSTALLED)
    assert [d["app"] for _t, d in errors] == ["a-slow"] and errors[0][0] > installed_at


def test_a_vm_needs_its_vmm_overhead_and_a_container_none() -> None:
    """§8 `CountMemOverhead`: NOHYPER (eden's container) has no VMM; a 2800 MiB VM with 2 vCPUs
    needs 2800 + 350 + 70 + 20 + 6 MiB and does not fit in 3072 MiB, the same container does."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    _deploy(drv, vm=_app(2800 * MiB, cpus=2))
    drv.run_until(lambda: bool(drv.node.zedmanager.apps.get("vm", {}).get("err")))
    need = _vm_need(2800 * MiB, 2)
    assert need == 2800 * MiB + 350 * MiB + 73400320 + 20 * MiB + 6 * MiB
    assert drv.node.zedmanager.apps["vm"]["err"] == f"Remaining memory bytes {3 * GiB} app instance needs {need}"
    assert drv.node.zedmanager.apps["vm"]["severity"] == "ERROR"  # nothing else active (no retry condition)
    assert _state(drv, "vm") == ZSwState.INSTALLED

    drv2 = online(driver(memory=4 * GiB, reserved=1 * GiB))
    _deploy(drv2, box=_app(2800 * MiB, kind="container", cpus=2))
    drv2.run_until(lambda: _state(drv2, "box") == ZSwState.RUNNING)
    assert drv2.node.zedmanager.apps["box"]["err"] == ""


def test_memory_vmm_limit_mib_replaces_the_estimated_overhead() -> None:
    """§8 `vmmOverhead`: memory.vmm.limit.MiB > 0 is the overhead (here 100 MiB: 2900 + 100 fits
    in 3072 MiB, while the estimate of ~445 MiB does not)."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    drv.ctrl.item("memory.vmm.limit.MiB", 100)
    drv.run_for(120)
    _deploy(drv, vm=_app(2900 * MiB, cpus=2))
    drv.run_until(lambda: _state(drv, "vm") == ZSwState.RUNNING)
    assert drv.node.zedmanager.apps["vm"]["overhead"] == 100 * MiB
    assert admission.vmm_overhead(_app(2900 * MiB, cpus=2), 0) == _vm_need(2900 * MiB, 2) - 2900 * MiB


def test_memory_apps_ignore_check_lets_an_app_that_does_not_fit_start() -> None:
    """§8: doActivate skips the check when memory.apps.ignore.check is true."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    drv.ctrl.item("memory.apps.ignore.check", "true")
    drv.run_for(120)
    _deploy(drv, huge=_app(4 * GiB, cpus=2))
    drv.run_until(lambda: _state(drv, "huge") == ZSwState.RUNNING)
    assert not drv.has_note("app_error")


def test_an_app_admitted_without_the_check_counts_without_vmm_overhead() -> None:
    """§8 doActivate computes MemOverhead only inside the memory check: a 1 GiB VM activated with
    memory.apps.ignore.check counts 1 GiB for later checks, so a 2 GiB container still fits in
    the 3 GiB (it would not next to 1 GiB + ~400 MiB)."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    drv.ctrl.item("memory.apps.ignore.check", "true")
    drv.run_for(120)
    _deploy(drv, vm=_app(1 * GiB, cpus=2))
    drv.run_until(lambda: _state(drv, "vm") == ZSwState.RUNNING)
    drv.ctrl.item("memory.apps.ignore.check", "false")
    drv.run_for(120)
    _deploy(drv, box=_app(2 * GiB, kind="container"))
    drv.run_until(lambda: _state(drv, "box") == ZSwState.RUNNING)
    assert not drv.has_note("app_error")


def test_more_vcpus_than_cores_is_not_refused() -> None:
    """§8: zedmanager and domainmgr have no vCPU-versus-cores check (unpinned VMs share all CPUs)."""
    drv = online(driver(cores=2, memory=4 * GiB, reserved=1 * GiB))
    _deploy(drv, wide=_app(512 * MiB, cpus=16))
    drv.run_until(lambda: _state(drv, "wide") == ZSwState.RUNNING)
    assert drv.node.zedmanager.apps["wide"]["err"] == ""


def test_an_app_waiting_for_memory_starts_5_to_10_s_after_another_is_deleted() -> None:
    """§8: doInactivateHalt sets checkFreedResources; the 5-10 s freeResourceChecker runs
    checkRetry, which clears the error and activates the waiting app again."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    _deploy(drv, first=_app(2 * GiB, kind="container"))
    drv.run_until(lambda: _state(drv, "first") == ZSwState.RUNNING)
    _deploy(drv, second=_app(2 * GiB, kind="container"))
    drv.run_until(lambda: bool(drv.node.zedmanager.apps.get("second", {}).get("err")))
    assert drv.node.zedmanager.apps["second"]["severity"] == "WARNING"  # another app is active: retry expected
    drv.run_for(600)
    assert _state(drv, "second") == ZSwState.INSTALLED  # no retry while nothing is freed
    assert not any(name == "app_retry" for _t, name, _at in drv.timers_set)

    apps = dict(drv.ctrl.config["apps"])
    del apps["first"]
    drv.ctrl.set(apps=apps)
    trace = drv.watch(lambda n: n.zedmanager.apps.get("second", {}).get("state"))
    drv.run_until(lambda: _state(drv, "second") == ZSwState.RUNNING)
    (removed_at,) = drv.note_times("app_removed")
    booting_at = next(t for t, s in trace if s == ZSwState.BOOTING)
    assert 5.0 <= booting_at - removed_at <= 10.0
    assert drv.node.zedmanager.apps["second"]["err"] == ""


def test_an_app_waiting_for_memory_does_not_hold_memory() -> None:
    """§8 getRemainingMemory counts only activated or activating apps: a smaller app deployed after
    one that waits still fits."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    _deploy(drv, big=_app(4 * GiB, kind="container"))
    drv.run_until(lambda: bool(drv.node.zedmanager.apps.get("big", {}).get("err")))
    _deploy(drv, small=_app(1 * GiB, kind="container"))
    drv.run_until(lambda: _state(drv, "small") == ZSwState.RUNNING)
    assert _state(drv, "big") == ZSwState.INSTALLED


def test_apps_are_admitted_again_after_a_reboot() -> None:
    """§8: after a reboot every app activates again through doActivate, so memory is checked again:
    two 2 GiB apps that ran with memory.apps.ignore.check come back as one running and one waiting
    once the check is on."""
    drv = online(driver(memory=4 * GiB, reserved=1 * GiB))
    drv.ctrl.item("memory.apps.ignore.check", "true")
    drv.run_for(120)
    _deploy(drv, one=_app(2 * GiB, kind="container"), two=_app(2 * GiB, kind="container"))
    drv.run_until(lambda: _state(drv, "one") == _state(drv, "two") == ZSwState.RUNNING)
    drv.ctrl.item("memory.apps.ignore.check", "false")
    drv.run_for(120)
    assert _state(drv, "two") == ZSwState.RUNNING  # a running app is not checked again
    drv.ctrl.set(reboot=1)
    drv.run_until(lambda: len(drv.resets) == 1, limit=900)
    drv.run_until(lambda: _state(drv, "one") == ZSwState.RUNNING, limit=900)
    drv.run_for(60)
    assert _state(drv, "two") == ZSwState.INSTALLED
    assert drv.node.zedmanager.apps["two"]["err"] == f"Remaining memory bytes {1 * GiB} app instance needs {2 * GiB}"


def test_the_shortage_texts_and_severities_are_eves() -> None:
    """§8 doActivate: short even with the halting apps gone -> "Remaining memory bytes R app
    instance needs N" (ERROR, WARNING when other apps are active); enough once the halting ones are
    gone -> the waiting-for-halting notice."""
    assert admission.check(100, 100, 0, False) is None
    short = admission.check(300, 100, 50, False)
    assert short == admission.Shortage("Remaining memory bytes 100 app instance needs 300", "ERROR")
    assert admission.check(300, 100, 50, True) == admission.Shortage(short.error, "WARNING")
    notice = admission.check(300, 100, 200, True)
    assert notice == admission.Shortage(
        "App instance needs 300 bytes but only have 100; waiting for one or more halting app instances to free up 200 bytes",
        "NOTICE",
    )
    assert admission.config_memory({"memory": 1025}) == 2048  # KiB on the wire, rounded up


def test_the_app_condition_matches_the_error_text_when_given() -> None:
    """Scenario `app: {name, state, error}`: `error` must be contained in appErr; "" means none."""
    from eden.conditions import DeviceMatcher
    from eden.scenario.model import Condition

    waiting = {"reported": True, "apps": {"x": {"state": "INSTALLED", "err": "Remaining memory bytes 1 app instance needs 2"}}}
    clean = {"reported": True, "apps": {"x": {"state": "INSTALLED", "err": ""}}}

    def match(app: dict[str, Any], view: dict[str, Any]) -> bool:
        return DeviceMatcher(Condition.model_validate({"app": app}), {})(view)

    assert match({"name": "x", "state": "INSTALLED", "error": "needs 2"}, waiting)
    assert not match({"name": "x", "state": "INSTALLED", "error": "needs 3"}, waiting)
    assert not match({"name": "x", "state": "RUNNING", "error": "needs 2"}, waiting)
    assert match({"name": "x", "state": "INSTALLED", "error": ""}, clean)
    assert not match({"name": "x", "state": "INSTALLED", "error": ""}, waiting)
    assert match({"name": "x", "state": "INSTALLED"}, waiting)  # no error key: state only
    assert not match({"name": "x", "state": "INSTALLED", "error": ""}, {"reported": False})
    assert not match({"name": "x", "state": "ABSENT", "error": "needs"}, {"reported": True, "apps": {}})
    assert match({"name": "x", "state": "ABSENT", "error": ""}, {"reported": True, "apps": {}})


def test_an_app_activating_while_another_halts_gets_the_notice_then_starts() -> None:
    """§8 doActivate: when the halting apps' memory would cover the need, appErr is the
    "waiting for one or more halting app instances" notice; once the halting app is gone the
    retry starts it. Halting takes U[2, 10] s, so a seed is picked whose halt outlasts the new
    app's ~4 s path to activation (the assertions hold for any seed that gets there)."""
    for seed in range(1, 40):
        drv = online(driver(seed=seed, memory=4 * GiB, reserved=1 * GiB))
        _deploy(drv, old=_app(2 * GiB, kind="container"))
        drv.run_until(lambda: _state(drv, "old") == ZSwState.RUNNING)
        drv.ctrl.set(apps={"new": _app(2 * GiB, kind="container", size=1 * MiB)})
        drv.run_until(lambda: "new" in drv.node.zedmanager.apps)
        drv.run_until(
            lambda: bool(drv.node.zedmanager.apps["new"]["err"]) or _state(drv, "new") == ZSwState.BOOTING or "old" not in drv.node.zedmanager.apps
        )
        if _state(drv, "old") != ZSwState.HALTING or not drv.node.zedmanager.apps["new"]["err"]:
            continue
        new = drv.node.zedmanager.apps["new"]
        assert new["state"] == ZSwState.INSTALLED and new["severity"] == "NOTICE"
        assert new["err"] == (
            f"App instance needs {2 * GiB} bytes but only have {1 * GiB}; "
            f"waiting for one or more halting app instances to free up {2 * GiB} bytes"
        )
        drv.run_until(lambda: _state(drv, "new") == ZSwState.RUNNING)
        (removed_at,) = drv.note_times("app_removed")
        assert drv.now - removed_at >= 5.0 and drv.node.zedmanager.apps["new"]["err"] == ""
        return
    raise AssertionError("no seed in 1..39 let the halt outlast the new app's activation")
