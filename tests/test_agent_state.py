"""The agent's state directory: exact Persist round trip, atomic writes, spec validation, tamper."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from eden_subprocess import run_eden

from eden.agent.spec import AgentSpec, load_spec
from eden.agent.state import StateDir, persist_from_json, persist_to_json
from eden.errors import InvalidInput
from eve.config_items import ItemError
from eve.enums import BootReason, PartitionState, ZSwState
from eve.node import Node, Persist

SPEC = {
    "serial": "st-1",
    "profile": "qemu-x86_64",
    "image": "base",
    "images": {"base": {"version": "13.4.0"}, "next": {"version": "13.5.0", "behaviour": "crash-on-boot", "size": 1000}},
    "boot_time": 1.0,
}


def _busy_persist() -> Persist:
    """A Persist with every field away from its default, as after an update, a failure and a tamper."""
    spec = AgentSpec.model_validate(SPEC)
    node = Node(spec.node_params(), "base", np.random.default_rng(1))
    node.power_on(0.0)
    p = node.persist
    p.zboot.write_other("13.5.0", "next")
    p.zboot.set_updating(p.zboot.other_partition.label)
    p.uuid = "u-1"
    p.reboot_record = (BootReason.UPDATE, "NORMAL: baseos-update(IMGB) to EVE version 13.5.0 reboot")
    p.power_lost = True
    p.restart_counter = 7
    p.config = {"hash": "h", "items": {"timer.config.interval": 5}, "apps": {"a": {"cpus": 1, "memory": 2, "size": 3}}}
    errors = p.items.apply({"timer.config.interval": 5, "no.such.item": 1})
    assert errors  # the unknown key is kept as an error entry
    p.reboot_seen, p.retry_seen, p.force_fallback_seen = 1, 2, 0
    p.failed = {"13.3.0": "Fallback from 13.3.0"}
    p.seal = bytes(range(32))
    p.vault_key = "vault-st-1"
    p.tamper = {"rootfs": "tampered-rootfs-1"}
    p.apps_installed = {"b", "a"}
    p.bos = {"version": "13.5.0", "image": "next", "activate": True, "zsw": ZSwState.LOADING, "err": "", "too_early": False}
    return p


def test_persist_json_round_trip_is_exact() -> None:
    p = _busy_persist()
    doc = json.loads(json.dumps(persist_to_json(p)))  # through real JSON text
    back = persist_from_json(doc)
    assert back.zboot.snapshot() == p.zboot.snapshot()
    assert back.zboot.partitions["IMGB"].state is PartitionState.UPDATING
    for name in ("uuid", "reboot_record", "power_lost", "last_booted", "restart_counter", "boots_without_agents", "config",
                 "reboot_seen", "retry_seen", "force_fallback_seen", "failed", "seal", "vault_key", "tamper",
                 "apps_installed", "bos"):
        assert getattr(back, name) == getattr(p, name), name
    assert type(back.reboot_record) is tuple and back.reboot_record[0] is BootReason.UPDATE
    assert back.bos is not None and back.bos["zsw"] is ZSwState.LOADING
    assert back.items == p.items and all(isinstance(e, ItemError) for e in back.items.errors)
    assert persist_to_json(back) == persist_to_json(p)


def test_state_dir_save_is_atomic_and_overrides_power_lost(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "dev")
    state.init(AgentSpec.model_validate(SPEC))
    p = _busy_persist()
    p.power_lost = False
    first = state.save(p, 3, power_lost=True)
    assert sorted(f.name for f in state.path.iterdir()) == ["config", "device.cert.pem", "device.key.pem", "persist.json", "spec.json"]
    saved = state.load()
    assert saved is not None and saved.boots == 3 and saved.persist.power_lost is True
    assert p.power_lost is False  # the in-memory value is untouched
    mtime = state.persist_file.stat().st_mtime_ns
    assert state.save(p, 3, power_lost=True, unless=first) == first
    assert state.persist_file.stat().st_mtime_ns == mtime  # unchanged state: no write
    state.save(p, 4)
    saved = state.load()
    assert saved is not None and saved.boots == 4 and saved.persist.power_lost is False
    assert (state.path / "device.key.pem").stat().st_mode & 0o777 == 0o600


def test_spec_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image 'nope' is not in images"):
        AgentSpec.model_validate({**SPEC, "image": "nope"})
    with pytest.raises(ValueError, match="minimum is 5"):
        AgentSpec.model_validate({**SPEC, "config_items": {"timer.config.interval": 1}})
    # An unknown key is EVE's to report in configItemStatus, not a reason to refuse the device.
    assert AgentSpec.model_validate({**SPEC, "config_items": {"timer.config.interva": 5}}).config_items
    with pytest.raises(ValueError, match="behaviour"):
        AgentSpec.model_validate({**SPEC, "images": {"base": {"version": "1", "behaviour": "explodes"}}})
    bad = tmp_path / "spec.yaml"
    bad.write_text("serial: x\nprofile: qemu-x86_64\nimage: base\nimages: {base: {version: '1'}}\nseeds: 3\n")
    with pytest.raises(InvalidInput) as info:
        load_spec(bad)
    assert "seeds" in str(info.value) and "spec.yaml:5" in str(info.value)
    with pytest.raises(InvalidInput, match="unknown hardware profile"):
        AgentSpec.model_validate({**SPEC, "profile": "qemu-x86"}).node_params()


def test_spec_node_params_follow_the_profile() -> None:
    spec = AgentSpec.model_validate({**SPEC, "boot_time": 2.5})
    params = spec.node_params()
    assert params.serial == "st-1" and params.tpm and [p.name for p in params.ports] == ["eth0", "eth1"]
    assert params.boot_time(np.random.default_rng(0)) == 2.5
    assert params.images["next"].behaviour == "crash-on-boot" and params.images["next"].size == 1000


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return run_eden("agent", *args, cwd=None)


def test_tamper_from_outside_is_measured_at_next_boot(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "dev")
    spec = AgentSpec.model_validate(SPEC)
    state.init(spec)
    node = Node(spec.node_params(), "base", np.random.default_rng(0))
    node.power_on(0.0)
    clean_pcrs = dict(node.pcrs)
    state.save(node.persist, 1)
    res = _agent("tamper", "--state-dir", str(state.path), "--stage", "rootfs")
    assert res.returncode == 0, res.stderr
    event = json.loads(res.stdout.splitlines()[-1])
    assert event["device"] == "st-1" and event["what"] == "tamper" and event["data"] == {"stage": "rootfs"}
    saved = state.load()
    assert saved is not None and saved.persist.tamper == {"rootfs": "tampered-rootfs-1"}
    again = Node(spec.node_params(), "base", np.random.default_rng(0))
    again.persist = saved.persist
    again.power_off(1.0)
    again.power_on(2.0)
    assert again.pcrs[13] != clean_pcrs[13] and again.pcrs[8] == clean_pcrs[8]
    assert _agent("tamper", "--state-dir", str(state.path)).returncode == 2  # no --stage
    assert _agent("tamper", "--state-dir", str(tmp_path / "none"), "--stage", "rootfs").returncode == 2


def test_attestation_reference_approves_clean_boots_only() -> None:
    """The reference (for ``eden controller preregister``) is what the controller rules need to
    approve the device's quotes: a clean boot passes, a tampered one does not."""
    from simulator.controller import ControllerModel

    spec = AgentSpec.model_validate(SPEC)
    ref = spec.attestation_reference()
    assert ref["images"]["base"] == {"version": "13.4.0", "measurement": "base:13.4.0"}
    ctrl = ControllerModel(workers=1, service_time=0.01, queue_limit=10, global_items={}, enforce_attestation=True)
    i = ctrl.add_device(spec.serial, ref["firmware"], {n: img["measurement"] for n, img in ref["images"].items()})
    codes = []
    for tamper in (None, "rootfs"):
        node = Node(spec.node_params(), "base", np.random.default_rng(0))
        if tamper:
            node.tamper(tamper, 0.0)
        node.power_on(0.0)
        nonce = ctrl.answer(i, "attest", {"type": "NONCE"})[1]["nonce"]
        pcrs = {k: v.hex() for k, v in node.pcrs.items() if k < 16}
        codes.append(ctrl.answer(i, "attest", {"type": "QUOTE", "nonce": nonce, "pcrs": pcrs, "tpm": True})[1]["code"])
    assert codes == ["SUCCESS", "QUOTE_FAILED"]


def test_identity_is_durable_and_remade_after_a_cut_during_first_start(tmp_path: Path) -> None:
    """Key then cert, each fsync'd; a first start cut before the cert was written makes a new pair."""
    import argparse
    import stat

    from eden.agent.cli import _prepare

    state = StateDir(tmp_path / "dev")
    state.init(AgentSpec.model_validate(SPEC))
    cert, key = state.path / "device.cert.pem", state.path / "device.key.pem"
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert.unlink()  # the power went before the cert reached the disk
    _prepare(argparse.Namespace(spec=None, config_dir=None, root_cert=None), state)
    assert cert.is_file() and key.is_file()
    from cryptography import x509

    from eden.wire import pki

    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    assert loaded.public_key().public_numbers() == pki.load_key(key).public_key().public_numbers()
