"""A device deleted at the controller, and created again (spec §1 "404/400"; P:cmd/zedagent/
handleconfig.go ``potentialUUIDUpdate``, P:cmd/client/client.go): the controller's answers for each
way back, and the scenario ``device-deleted.yaml`` on the simulator (refused on real backends, whose
controller cannot delete a device)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eden.errors import InvalidInput
from eden.run import execute, load_for_backend
from eve.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "device-deleted.yaml"


def _onboarded(recreate: str) -> tuple[Controller, str]:
    ctl = Controller(global_items={}, enforce_attestation=False)
    i = ctl.add_device("s-1", "fw", {})
    assert ctl.answer(i, "register", {"cert": "c-1"}) == (201, {})
    status, body = ctl.answer(i, "uuid", {})
    assert status == 200
    old = body["uuid"]
    assert ctl.answer(i, "config", {"hash": ""}, old)[0] == 200
    ctl.delete_device([i], recreate)
    return ctl, old


def test_deleted_for_good_every_request_is_unknown_and_register_is_refused() -> None:
    ctl, old = _onboarded("none")
    for kind in ("config", "info", "metrics", "logs", "attest", "uuid"):
        assert ctl.answer(0, kind, {}, old)[0] == 404, kind
    assert ctl.answer(0, "register", {"cert": "c-1"})[0] == 403
    assert ctl.answer(0, "certs", {})[0] == 200  # unauthenticated: still served
    assert ctl.devices[0].uuid is None and not ctl.attributed(0, "config", old)


def test_created_again_by_serial_the_old_cert_is_unknown_until_it_registers_again() -> None:
    ctl, old = _onboarded("onboarding")
    assert ctl.answer(0, "config", {"hash": ""}, old)[0] == 404
    assert ctl.answer(0, "uuid", {})[0] == 404  # the lookup finds no record for this cert
    assert ctl.answer(0, "register", {"cert": "c-1"}) == (201, {})  # a new registration
    status, body = ctl.answer(0, "uuid", {})
    assert status == 200 and body["uuid"] != old
    assert ctl.answer(0, "config", {"hash": ""}, body["uuid"])[0] == 200
    assert ctl.answer(0, "config", {"hash": ""}, old)[0] == 404


def test_created_again_with_its_cert_the_lookup_gives_the_new_uuid() -> None:
    ctl, old = _onboarded("cert")
    new = ctl.devices[0].uuid
    assert new is not None and new != old
    assert ctl.answer(0, "config", {"hash": ""}, old)[0] == 404  # id/<old uuid>/config: no such device
    assert ctl.answer(0, "uuid", {}) == (200, {"uuid": new})
    assert ctl.answer(0, "config", {"hash": ""}, new)[0] == 200  # the desired config was kept
    assert ctl.answer(0, "register", {"cert": "c-1"})[0] == 200  # the same cert: already registered


def test_the_token_and_escrowed_key_go_with_the_old_record() -> None:
    ctl = Controller(global_items={}, enforce_attestation=False)
    i = ctl.add_device("s-1", "fw", {})
    dev = ctl.devices[i]
    dev.token, dev.escrow, dev.token_required, dev.attest_failures = "t", "k", True, 2
    ctl.delete_device([i], "cert")
    assert (dev.token, dev.escrow, dev.token_required, dev.attest_failures) == (None, None, False, 0)
    with pytest.raises(ValueError, match="recreate"):
        ctl.delete_device([i], "later")


def _run(path: Path, out: Path) -> dict:
    execute(load_for_backend(path, "sim"), backend_name="sim", out_dir=out)
    return json.loads((out / "summary.json").read_text())


def test_the_shipped_scenario_passes_on_the_simulator_with_eves_timing(tmp_path: Path) -> None:
    summary = _run(SCENARIO, tmp_path / "out")
    assert summary["verdict"] == "passed", summary["expectations"]
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    deleted = next(e["t"] for e in events if e["what"] == "delete_device")
    started = next(e["t"] for e in events if e["what"] == "onboarded" and e["device"] == "moved-0")
    changed = [e for e in events if e["what"] == "uuid_changed"]
    # only moved learns a new uuid through the lookup, the first one 10 min after zedagent start
    assert [e["device"] for e in changed] == ["moved-0"], changed
    assert changed[0]["t"] - started >= 600 and changed[0]["t"] > deleted
    lookups = [e["t"] for e in events if e["what"] == "uuid_lookup" and e["device"] == "readded-0"]
    assert lookups and all(b - a >= 600 for a, b in zip(lookups, lookups[1:]))  # at most every 10 min
    refused = [e for e in events if e["what"] == "register_refused"]
    assert refused and {e["device"] for e in refused} == {"gone-0"} and {e["status"] for e in refused} == {403}


def test_without_the_reboot_readded_stays_unknown(tmp_path: Path) -> None:
    """The scenario's final expectations can fail: EVE's client registers only at boot."""
    text = SCENARIO.read_text()
    variant = tmp_path / "no-reboot.yaml"
    variant.write_text(text.replace("  - power_cycle: {}\n    target: {devices: [readded-0, gone-0]}\n", "  - wait: 20m\n"))
    summary = _run(variant, tmp_path / "out")
    assert summary["verdict"] == "failed"
    failed = [e["name"] for e in summary["expectations"] if e["status"] == "failed"]
    assert failed == ["readded registers again at boot and works under its new UUID"], failed


@pytest.mark.parametrize("backend", ["emulated", "qemu"])
def test_delete_device_is_refused_at_validation_by_real_backends(backend: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_for_backend(SCENARIO, backend)
    text = str(info.value)
    assert f"'delete_device' is not supported by backend '{backend}'" in text, text
    assert "cannot delete a device" in text, text
    assert "device-deleted.yaml:19:" in text, text  # the first delete_device step
