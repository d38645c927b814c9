"""Operations rules of the node model: attestation
restarts on a config 403, a hung agent, maintenance reasons, device deletion, shutdown.

Same harness as tests/test_node_rules.py (a bare ``Node``, a fake controller, a heap of timers).
Section numbers (``§5``) refer to shared/reference/eve-behaviour.md.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_node_rules import LAT, Driver, Send, driver, in_test_window, online, reboot_done, zb

from eve.enums import AttestState, BootReason, ConfigGetStatus, MaintenanceModeReason, PartitionState as PS, ZDeviceState


def _nonces(drv: Driver, since: float = -1.0) -> list[float]:
    return [t for t, s in drv.sent("attest", since) if s.body["type"] == "NONCE"]


# --------------------------------------------------------------------- item 9: 403 restarts --
def test_a_403_during_attestation_queues_one_more_attestation_after_complete() -> None:
    """§5 (P:attest/attest.go handleRestart, handleAttestEscrowRecordedAtAttestEscrowWait): a
    restart asked for while a cycle runs is remembered and runs 15 s after that cycle's COMPLETE."""
    drv = online(driver())
    drv.ctrl.item("timer.config.interval", 5)
    drv.run_for(30)
    refuse = {"on": True}
    drv.ctrl.override["config"] = lambda s, t: (403, {}, LAT) if refuse["on"] else None
    # the NONCE answer takes 20 s, so polls with the current token get 403 while the cycle runs
    drv.ctrl.override["attest"] = lambda s, t: None if s.body["type"] != "NONCE" else (201, {"type": "NONCE", "nonce": f"n{t}"}, 20.0)
    t0 = drv.now
    drv.run_until(lambda: len(_nonces(drv, t0)) == 1)
    t_first = drv.now
    # COMPLETE and at once RESTART_WAIT again: the restart remembered during the cycle
    drv.run_until(lambda: drv.node.attest.state == AttestState.RESTART_WAIT)
    assert drv.has_note("attested", since=t_first)
    refuse["on"] = False  # the controller accepts the new token from now on
    t_complete = drv.now
    forbidden_during = [t for t, k, s, _b in drv.responses if k == "config" and s == 403 and t_first < t < t_complete]
    assert len(forbidden_during) >= 2, "no 403 arrived while the cycle ran"
    drv.run_for(600)
    nonces = _nonces(drv, t0)
    assert len(nonces) == 2  # exactly one more attestation, not one per 403
    assert nonces[1] == pytest.approx(t_complete + 15.0)
    assert drv.node.attest.state == AttestState.COMPLETE


class _TokenController:
    """The real controller's rule (eve/controller.py, eden/controller): config with a token
    other than the newest one issued gets 403, and the token is issued when the quote is checked."""

    def __init__(self, drv: Driver, quote_latency: float) -> None:
        self.ctrl = drv.ctrl
        self.required = False
        self.quote_latency = quote_latency
        drv.ctrl.override["config"] = self.config
        drv.ctrl.override["attest"] = self.attest

    def config(self, s: Send, t: float) -> tuple[int, dict[str, Any], float] | None:
        if self.required and s.body.get("token") != self.ctrl.token:
            return 403, {}, LAT
        return None

    def attest(self, s: Send, t: float) -> tuple[int, dict[str, Any], float] | None:
        if s.body["type"] != "QUOTE":
            return None
        self.ctrl._n += 1
        self.ctrl.token = f"token-{self.ctrl._n}"
        self.required = True
        return 201, {"type": "QUOTE", "code": "SUCCESS", "token": self.ctrl.token, "key": self.ctrl.escrow}, self.quote_latency

    def revoke(self) -> None:
        self.ctrl.token = None


def test_a_revoked_token_on_a_slow_link_settles_without_a_livelock() -> None:
    """Item 9 bound: the quote answer takes 20 s and polls run every 1.5-5 s, so in every cycle
    some configs sent with the old token meet the controller's new one and get 403. Queued as in
    EVE each cycle would queue the next forever; here the queued cycle queues none and a 403 for
    a token already replaced asks for nothing, so the device settles at COMPLETE."""
    drv = driver()
    tc = _TokenController(drv, quote_latency=20.0)
    online(drv)
    drv.ctrl.item("timer.config.interval", 5)
    drv.run_for(60)
    assert drv.node.attest.state == AttestState.COMPLETE
    t0 = drv.now
    tc.revoke()
    drv.run_for(3600)
    forbidden = [t for t, k, s, _b in drv.responses if k == "config" and s == 403 and t > t0]
    assert len(forbidden) >= 3  # the slow quote answer made stale-token 403s in the cycles
    nonces = _nonces(drv, t0)
    assert 1 <= len(nonces) <= 2  # the restart and at most the one queued behind it
    assert drv.node.attest.state == AttestState.COMPLETE
    assert not [t for t in nonces if t > t0 + 600]  # settled: nothing in the last 50 minutes
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS


# ------------------------------------------------------------------ item 11: one agent hangs --
def test_a_hung_zedagent_does_not_stop_nodeagent_the_test_window_commits() -> None:
    """§3/§7: a hung zedagent is one agent, not the node. nodeagent keeps its 10 s ticks, and its
    copy of the config status stays Success, so the window that started before the hang commits at
    600 s; the watchdog reboots 300 s after the hang (WATCHDOG_HUNG) into the committed image."""
    drv = driver()
    online(drv)
    start = in_test_window(drv)
    drv.run(start + 400.0)
    drv.call("hang", "zedagent")
    hung = drv.now
    drv.run_until(lambda: drv.has_note("update_committed"), limit=400)
    assert drv.note_times("update_committed")[0] == pytest.approx(start + 600.0, abs=10.0)
    assert not [t for t, s in drv.sent("config", since=hung + 1e-6)]
    reset_at = reboot_done(drv)
    assert reset_at == pytest.approx(hung + 300.0)
    assert drv.resets[-1][1] == BootReason.WATCHDOG_HUNG
    assert zb(drv).current == "IMGB" and zb(drv)["IMGB"].state == PS.ACTIVE  # no rollback
    assert drv.node.boot_reason == BootReason.WATCHDOG_HUNG


def test_the_hardware_profiles_random_hang_is_reset_by_the_watchdog_300_s_later() -> None:
    """§7: a profile's ``hang_per_day`` hangs zedagent at a random time (the hardware's luck); the
    watchdog resets the device 300 s after it, WATCHDOG_HUNG. (Until 2026-12-07 the hang's actions
    were dropped: zedagent stopped, nothing armed the watchdog, and the device never polled again.)"""
    drv = driver()
    drv.node.p.hang_per_day = 86400.0 / 600.0  # one hang every 10 min on average
    online(drv)
    drv.run_until(lambda: drv.has_note("hang"), limit=7200)
    hung = drv.note_times("hang")[0]
    assert not drv.node.zedagent.running
    reset_at = reboot_done(drv)
    assert reset_at == pytest.approx(hung + 300.0)
    assert drv.resets[-1][1] == BootReason.WATCHDOG_HUNG
    drv.run_until(lambda: drv.node.zedagent.running, limit=300)  # polling again after the reboot
    assert drv.node.boot_reason == BootReason.WATCHDOG_HUNG


def test_a_hung_nodeagent_stops_the_commit_and_the_watchdog_rolls_back() -> None:
    """§3/§7: with nodeagent hung its timers stop: the window does not commit, and the watchdog's
    reset before the commit boots the old image, which reports WATCHDOG_HUNG."""
    drv = driver()
    online(drv)
    start = in_test_window(drv)
    drv.run(start + 400.0)
    drv.call("hang", "nodeagent")
    hung = drv.now
    reset_at = reboot_done(drv)
    assert reset_at == pytest.approx(hung + 300.0)
    assert not drv.has_note("update_committed")
    assert zb(drv).current == "IMGA"
    assert drv.node.boot_reason == BootReason.WATCHDOG_HUNG


def test_a_dead_agent_process_reboots_with_watchdog_pid() -> None:
    """§7: a dead pid is found at the watchdog's next 1 s check -> reboot, WATCHDOG_PID."""
    drv = online(driver())
    drv.run_for(50)
    drv.call("agent_exit", "zedmanager")
    died = drv.now
    reboot_done(drv)
    assert drv.resets[-1] == (pytest.approx(died + 1.0), BootReason.WATCHDOG_PID)
    assert drv.node.boot_reason == BootReason.WATCHDOG_PID
    assert "zedmanager.pid" in drv.node.boot_reason_text


# ----------------------------------------------------------- item 12: maintenance as EVE merges it --
M = MaintenanceModeReason


def _reasons(drv: Driver) -> set[MaintenanceModeReason]:
    return set(drv.node.zedagent.maintenance)


def test_maintenance_mode_item_enabled_gives_user_requested_only() -> None:
    """§6/§7 mergeMaintenanceMode: maintenance.mode=enabled -> [USER_REQUESTED] only, even with a
    local reason present; back to none -> the local reason again."""
    drv = online(driver())
    drv.call("disk_space", 0)
    assert _reasons(drv) == {M.LOW_DISK_SPACE}
    drv.ctrl.item("maintenance.mode", "enabled")
    drv.run_until(lambda: _reasons(drv) == {M.USER_REQUESTED}, limit=120)
    assert drv.node.device_state() == ZDeviceState.MAINTENANCE_MODE
    drv.ctrl.item("maintenance.mode", "none")
    drv.run_until(lambda: _reasons(drv) == {M.LOW_DISK_SPACE}, limit=120)


def test_maintenance_mode_item_disabled_overrides_every_local_reason() -> None:
    """§6/§7: maintenance.mode=disabled -> never in maintenance, over local reasons and the
    config's maintenance_mode alike; the deferred apps are applied."""
    drv = online(driver())
    drv.call("tpm_sanity", False)
    drv.ctrl.set(maintenance=True)
    drv.run_until(lambda: _reasons(drv) == {M.USER_REQUESTED}, limit=120)  # api flag wins over local reasons
    drv.ctrl.set(apps={"a": {"kind": "container", "cpus": 1, "memory": 64 * 2**20, "size": 2**20, "activate": True}})
    drv.run_for(120)
    assert "a" not in drv.node.zedmanager.apps  # deferred in maintenance
    drv.ctrl.item("maintenance.mode", "disabled")
    drv.run_until(lambda: not drv.node.zedagent.maintenance, limit=120)
    assert drv.node.device_state() == ZDeviceState.ONLINE
    drv.run_until(lambda: "a" in drv.node.zedmanager.apps, limit=120)
    assert drv.node.nodeagent.local_maintenance == {M.TPM_ENCRYPTION_FAILURE}  # still there, overridden


def test_leaving_maintenance_forgets_the_config_hash_and_polls_at_once() -> None:
    """§1: leaving maintenance mode clears the config hash and fetches the config at once
    (forgetConfigHashOnLeavingMaintenanceMode, triggerGetConfig)."""
    drv = online(driver())
    drv.call("disk_space", 0)
    drv.run_for(100)
    drv.call("disk_space", 10 * 2**30)
    left = drv.now
    assert not drv.node.zedagent.maintenance
    drv.run_for(1)
    polls = drv.sent("config", since=left)
    assert polls and polls[0][0] == pytest.approx(left)
    assert polls[0][1].body["hash"] == ""


def test_a_device_without_a_tpm_has_no_tpm_check_to_fail() -> None:
    """§5: tpmmgr's sanity check needs a TPM; without one nothing reports TPM_ENCRYPTION_FAILURE."""
    drv = driver(tpm=False)
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.config_received, limit=600)
    drv.call("tpm_sanity", False)
    assert _reasons(drv) == set() and not drv.node.persist.tpm_broken
    assert drv.node.device_state() == ZDeviceState.ONLINE


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [(("disk_space", 0), M.LOW_DISK_SPACE), (("tpm_sanity", False), M.TPM_ENCRYPTION_FAILURE)],
)
def test_local_maintenance_triggers_defer_updates_and_survive_a_reboot(trigger: tuple[Any, ...], reason: MaintenanceModeReason) -> None:
    """§5/§7: volumemgr RemainingSpace 0 -> LOW_DISK_SPACE; tpmmgr TPM_ENCRYPTION_FAILURE ->
    TPM_ENCRYPTION_FAILURE. Base-OS changes are deferred; the condition is the hardware's, so it is
    there again after a reboot."""
    drv = online(driver())
    drv.call(*trigger)
    assert _reasons(drv) == {reason}
    assert drv.node.device_state() == ZDeviceState.MAINTENANCE_MODE
    drv.ctrl.update_to("next", "2.0")
    drv.run_for(600)
    assert zb(drv)["IMGB"].state == PS.UNUSED and drv.node.persist.bos is None  # deferred
    drv.ctrl.set(reboot=1)
    drv.run_for(60)
    drv.ctrl.set(reboot=2)  # the first counter is only stored
    reboot_done(drv)
    assert drv.node.boot_reason == BootReason.REBOOT_CMD
    assert _reasons(drv) == {reason}


# ------------------------------------------------------------- device deletion / uuid change --
def test_config_404_looks_the_uuid_up_at_most_every_10_min_from_zedagent_start() -> None:
    """§1 potentialUUIDUpdate: a config 404/400 runs ``client getUuid``; the first not before
    10 min after zedagent start, then at most every 10 min, however many polls fail."""
    drv = online(driver())
    drv.ctrl.item("timer.config.interval", 5)
    drv.run_for(30)
    drv.ctrl.override["config"] = lambda s, t: (404, {}, LAT)  # the device was deleted
    t_del = drv.now
    drv.run_for(1900)
    fails = [t for t, k, st, _b in drv.responses if k == "config" and st == 404]
    assert len(fails) > 100
    lookups = [t for t, _s in drv.sent("uuid", since=t_del)]
    assert len(lookups) == 3
    z_start = drv.sent("config")[0][0]  # zedagent's first poll: its start
    assert z_start + 600.0 <= lookups[0] < z_start + 610.0  # counted from zedagent start, not the first 404
    assert all(b - a >= 600.0 for a, b in zip(lookups, lookups[1:]))
    assert all(b - a < 610.0 for a, b in zip(lookups, lookups[1:]))  # at the next 404 after 10 min
    assert drv.node.persist.uuid == "uuid-1"  # the same answer: nothing changes


def test_a_uuid_lookup_takes_the_new_uuid_and_config_works_again() -> None:
    """§1: the device was deleted and created again under a new UUID: the lookup returns it,
    the device uses it (id/<uuid>/ paths) and gets a full config."""
    drv = online(driver())
    drv.run_for(600)
    new = {"uuid": "uuid-2"}
    drv.ctrl.override["config"] = lambda s, t: None if drv.node.persist.uuid == new["uuid"] else (404, {}, LAT)
    drv.ctrl.override["uuid"] = lambda s, t: (200, new, LAT)
    t_del = drv.now
    drv.run_until(lambda: drv.node.persist.uuid == "uuid-2", limit=700)
    changed = drv.now
    assert drv.has_note("uuid_changed", since=t_del)
    drv.run_until(lambda: any(t > changed and k == "config" and st == 200 for t, k, st, _b in drv.responses), limit=120)
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS


def test_a_deleted_device_registers_again_at_its_next_boot() -> None:
    """§1: the lookup cannot find a deleted device (uuid 404); register runs on every boot while
    the onboard cert exists, so after a reboot it registers anew (201) and gets its new UUID."""
    drv = online(driver())
    deleted = {"on": True}
    drv.ctrl.override["config"] = lambda s, t: (404, {}, LAT) if deleted["on"] else None
    drv.ctrl.override["uuid"] = lambda s, t: (404, {}, LAT) if deleted["on"] or drv.ctrl.cert is None else (200, {"uuid": "uuid-9"}, LAT)
    drv.run_for(1300)
    assert drv.node.persist.uuid == "uuid-1" and len(drv.sent("uuid")) >= 2  # lookups found nothing
    deleted["on"] = False
    drv.ctrl.cert = None  # the controller forgot the device: the next register is a new one
    drv.power_off()
    drv.run_for(5)
    drv.power_on()
    drv.run_until(lambda: drv.node.persist.uuid == "uuid-9", limit=600)
    assert [st for _t, k, st, _b in drv.responses if k == "register"][-1] == 201
    drv.run_until(lambda: drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS, limit=120)


# ------------------------------------------------------------------- shutdown and power-off --
def _app_spec() -> dict[str, Any]:
    return {"kind": "container", "cpus": 1, "memory": 64 * 2**20, "size": 2**20, "activate": True}


def test_a_shutdown_command_halts_the_apps_and_ends_in_prepared_poweroff() -> None:
    """§1/§7: EdgeDevConfig.shutdown: the first counter is only stored; a change -> PREPARING_POWEROFF,
    30 s, apps halted -> PREPARED_POWEROFF; the device stays up (no reset) and ignores the rest of
    the config; the counter is echoed (shutdown_config_counter)."""
    drv = online(driver())
    drv.ctrl.set(apps={"a": _app_spec()}, shutdown=1)
    drv.run_until(lambda: "a" in drv.node.zedmanager.apps and drv.node.zedmanager.apps["a"]["state"].name == "RUNNING", limit=300)
    assert drv.node.nodeagent.node_op is None and drv.node.persist.shutdown_seen == 1  # first value: stored only
    drv.ctrl.set(shutdown=2)
    drv.run_until(lambda: drv.node.nodeagent.node_op == "shutdown", limit=120)
    t_cmd = drv.now
    assert drv.node.device_state() == ZDeviceState.PREPARING_POWEROFF
    assert drv.node.zedmanager.apps["a"]["state"].name == "HALTING"
    drv.run_until(lambda: drv.node.device_state() == ZDeviceState.PREPARED_POWEROFF, limit=400)
    assert drv.now >= t_cmd + 30.0
    assert drv.node.zedmanager.apps["a"]["state"].name == "HALTED"
    assert drv.node.persist.shutdown_seen == 2  # the value EVE echoes in shutdown_config_counter
    drv.ctrl.set(apps={"a": _app_spec(), "b": _app_spec()})
    drv.run_for(600)
    assert not drv.resets and drv.node.phase == "running"
    assert "b" not in drv.node.zedmanager.apps  # config ignored while shut down


def test_a_shutdown_in_the_test_window_is_deferred_until_the_commit() -> None:
    """§1 scheduleDeviceOperation: during the update test the shutdown waits for TestComplete."""
    drv = online(driver())
    drv.ctrl.set(shutdown=1)
    drv.run_for(120)
    in_test_window(drv)
    drv.ctrl.set(shutdown=2)
    drv.run_for(120)
    assert drv.node.nodeagent.node_op is None and drv.node.zedagent.deferred_shutdown
    drv.run_until(lambda: drv.has_note("update_committed"), limit=900)
    assert drv.node.nodeagent.node_op == "shutdown"


def test_a_poweroff_command_powers_off_and_the_next_boot_reports_poweroff_cmd() -> None:
    """§7: POWERING_OFF, the reason POWEROFF_CMD written, apps halted, 30 s, power off; the next
    power-on reports POWEROFF_CMD and starts with lastconfig (StartWithSavedConfig)."""
    drv = online(driver())
    drv.call("poweroff_cmd")
    t_cmd = drv.now
    assert drv.node.device_state() == ZDeviceState.POWERING_OFF
    drv.run_until(lambda: drv.node.phase == "off", limit=400)
    assert drv.now == pytest.approx(t_cmd + 60.0)  # no apps: 30 s + 30 s
    assert not drv.resets  # powered off, not reset
    drv.run_for(600)
    assert drv.node.phase == "off"
    drv.ctrl.down = "timeout"
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.config_status == ConfigGetStatus.READ_SAVED, limit=600)
    assert drv.node.boot_reason == BootReason.POWEROFF_CMD
    assert drv.notes_of("config_read_saved")[-1][1] == {"file": "lastconfig"}


# ------------------------------------------------------------------ EDGE_NODE_CERTS_REFUSED --
def test_a_refused_cert_post_once_config_works_is_edge_node_certs_refused() -> None:
    """§5: zedagent posts ATTEST_REQ_CERT at its start and, while it is not accepted, 10 s after
    each failure. A failed post while the config status is Success and before the first
    acceptance -> maintenance EDGE_NODE_CERTS_REFUSED; an accepted re-post clears it; a refusal
    while config fails is not (yet) a reason; once accepted, nothing is posted again."""
    answer = {"status": 404}
    posts: list[float] = []

    def certs(send: Any, now: float) -> Any:
        if send.body["type"] != "CERT":
            return None
        posts.append(now)
        return answer["status"], {}, LAT

    drv = driver()
    drv.ctrl.override["attest"] = certs
    drv.power_on()
    drv.run_until(lambda: _reasons(drv) == {M.EDGE_NODE_CERTS_REFUSED}, limit=300)
    assert drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS
    assert drv.node.device_state() == ZDeviceState.MAINTENANCE_MODE
    gaps = [b - a for a, b in zip(posts, posts[1:])]
    assert gaps and all(abs(g - 10.0) < 1.0 for g in gaps), gaps  # re-posted every 10 s
    drv.ctrl.down = "timeout"
    drv.run_until(lambda: drv.node.zedagent.config_status == ConfigGetStatus.FAIL, limit=300)
    drv.run_until(lambda: not drv.node.zedagent.maintenance, limit=60)  # no config contact: decided once it is back
    drv.ctrl.down = None
    drv.run_until(lambda: _reasons(drv) == {M.EDGE_NODE_CERTS_REFUSED}, limit=300)
    answer["status"] = 201
    drv.run_until(lambda: not drv.node.zedagent.maintenance, limit=30)
    sent = len(posts)
    drv.run_for(120)
    assert len(posts) == sent  # accepted: not posted again in this boot


def test_a_device_without_a_tpm_posts_no_certs() -> None:
    posts: list[float] = []
    drv = driver(tpm=False)
    drv.ctrl.override["attest"] = lambda send, now: posts.append(now) if send.body["type"] == "CERT" else None  # type: ignore[func-returns-value]
    drv.power_on()
    drv.run_until(lambda: drv.node.zedagent.config_status == ConfigGetStatus.SUCCESS, limit=300)
    drv.run_for(60)
    assert posts == [] and all(s.body["type"] != "CERT" for _t, s in drv.sent("attest"))