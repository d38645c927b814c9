"""The backend seams: ports with class-level capabilities, one action table, one registry.

Validation, dispatch and the docs all read what a backend performs from its ports, so these tests
check the joints rather than each backend's behaviour (tests/test_emulated_backend.py runs the
real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_texts import FALLBACK_DURING_OUTAGE

from eden.backends.actions import ACTION_TABLE, RUNNER_ACTIONS, performed_actions
from eden.backends.ports import CONTROLLER_METHODS, DEVICE_METHODS, ControllerPort, DevicePort
from eden.backends.registry import BackendEntry, REGISTRY, backend_actions, make_backend, runnable_backends
from eden.errors import InfrastructureError
from eden.run import execute, load_for_backend
from eden.scenario.model import ACTIONS
from eden.timeline import Timeline


def test_every_scenario_action_has_one_row_or_is_the_runners() -> None:
    assert set(ACTION_TABLE) | RUNNER_ACTIONS == set(ACTIONS)
    assert not set(ACTION_TABLE) & RUNNER_ACTIONS
    for action, row in ACTION_TABLE.items():
        methods = CONTROLLER_METHODS if row.port == "controller" else DEVICE_METHODS
        assert row.method in methods, action


@pytest.mark.parametrize("name", runnable_backends())
def test_capabilities_name_port_methods_the_port_overrides(name: str) -> None:
    cls = REGISTRY[name].backend_class()
    for own, base, methods in (
        (cls.controller_port_type, ControllerPort, CONTROLLER_METHODS),
        (cls.device_port_type, DevicePort, DEVICE_METHODS),
    ):
        assert own.capabilities <= methods
        for method in own.capabilities:
            assert getattr(own, method) is not getattr(base, method), f"{own.__name__}.{method} is declared, not written"


def test_a_backend_performs_the_union_of_its_ports() -> None:
    cls = REGISTRY["emulated"].backend_class()
    assert backend_actions("emulated") == performed_actions(cls.controller_port_type, cls.device_port_type, RUNNER_ACTIONS)
    assert "hang" in backend_actions("emulated") and "set_network" not in backend_actions("emulated")
    assert "deploy_app" not in backend_actions("qemu") and "controller_outage" in backend_actions("qemu")
    assert "controller_outage" not in backend_actions("board") and "hang" not in backend_actions("board")
    assert backend_actions("sim") == frozenset(ACTIONS)


def test_an_unknown_or_planned_backend_is_not_built() -> None:
    assert "board" in REGISTRY and "board" in runnable_backends()  # built since issue 15
    planned = BackendEntry("later", "a backend not built yet", None, None, planned_actions=frozenset({"wait"}))
    assert not planned.runnable and planned.actions() == frozenset({"wait"})
    with pytest.raises(InfrastructureError, match="not available"):
        planned.backend_class()
    with pytest.raises(InfrastructureError, match="not available"):
        make_backend("nope", None, 1, Timeline())  # type: ignore[arg-type]


def test_a_port_refuses_what_it_does_not_declare() -> None:
    with pytest.raises(InfrastructureError, match="cannot perform 'hang'"):
        DevicePort().hang(["d"], "zedagent")


def test_force_fallback_during_an_outage_falls_back_on_sim(tmp_path: Path) -> None:
    path = tmp_path / "fallback.yaml"
    path.write_text(FALLBACK_DURING_OUTAGE)
    result = execute(load_for_backend(path, "sim"), backend_name="sim", out_dir=tmp_path / "out")
    assert result.verdict == "passed", result.summary
