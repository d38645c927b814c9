"""ATTEST_REQ_CERT and EDGE_NODE_CERTS_REFUSED as a scenario (spec §5, §7): the step
``refuse_device_certs`` and ``scenarios/device-certs-refused.yaml`` on the simulator, refused on
real backends. The node rule itself is in tests/test_ops_rules.py."""

from __future__ import annotations

from pathlib import Path

from sim_run import run_sim

from eden.run import load_for_backend

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "device-certs-refused.yaml"



def test_refused_certs_hold_the_update_until_the_controller_accepts_them(tmp_path: Path) -> None:
    summary, events = run_sim(SCENARIO, tmp_path / "out")
    assert summary["verdict"] == "passed", summary["expectations"]
    on = [e["t"] for e in events if e["what"] == "maintenance_reason" and e["reason"] == "EDGE_NODE_CERTS_REFUSED" and e["on"]]
    off = [e["t"] for e in events if e["what"] == "maintenance_reason" and e["reason"] == "EDGE_NODE_CERTS_REFUSED" and not e["on"]]
    accepted = next(e["t"] for e in events if e["what"] == "refuse_device_certs" and e["enable"] is False)
    assert len(on) == 1 and len(off) == 1 and on[0] < accepted <= off[0]
    assert off[0] - accepted <= 10.5  # the next 10 s re-post is accepted
    # leaving maintenance forgets the config hash: the next poll is a full config, and the
    # deferred update starts at once (it did not while the bulk path answered such polls 304)
    started = next(e["t"] for e in events if e["what"] == "baseos_config" and e["t"] >= off[0])
    assert started - off[0] <= 60.0


def test_a_device_whose_certs_are_accepted_is_never_in_maintenance(tmp_path: Path) -> None:
    variant = tmp_path / "accepted.yaml"
    variant.write_text(SCENARIO.read_text().replace("  - refuse_device_certs: {}\n", "", 1))
    _summary, events = run_sim(variant, tmp_path / "out")
    assert not [e for e in events if e["what"] == "maintenance_reason"]


def test_the_same_file_validates_on_emulated_and_qemu() -> None:
    """The real controller's per-device cert refusal (tests/test_controller_answer_switch.py), on
    both real-time backends that run a controller of their own."""
    assert load_for_backend(SCENARIO, "emulated").scenario
    assert load_for_backend(SCENARIO, "qemu").scenario