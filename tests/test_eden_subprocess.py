"""The shared ``python -m eden`` helpers the subprocess tests start eden through."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from eden_subprocess import argv, env, run_eden, start_eden
from scenario_texts import preamble


def test_argv_runs_this_interpreter() -> None:
    assert argv("run", "x.yaml") == [sys.executable, "-m", "eden", "run", "x.yaml"]


def test_env_marks_the_run_and_gives_it_its_own_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDEN_EVE_IMAGE", "/elsewhere.img")
    got = env(tmp_path, mark="m-1", drop=("EDEN_EVE_IMAGE",), EDEN_SOCK_DIR="/tmp/s")
    assert got["EDEN_TEST_MARK"] == "m-1" and got["EDEN_SOCK_DIR"] == "/tmp/s"
    assert got["TMPDIR"] == str(tmp_path / "tmp") and (tmp_path / "tmp").is_dir()
    assert "EDEN_EVE_IMAGE" not in got and got["PATH"] == env()["PATH"]


def test_run_and_start_give_the_exit_code_and_the_output() -> None:
    done = run_eden("--version")
    assert done.returncode == 0 and done.stdout.startswith("eden "), done.stderr
    proc = start_eden("no-such-command")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no-such-command" in out  # stderr arrives through stdout's pipe


def test_preamble_is_the_head_of_a_valid_scenario() -> None:
    doc = yaml.safe_load(preamble("p", "d", seed=4, group="dut") + "steps:\n  - power_on: {}\n")
    assert doc == {"name": "p", "description": "d", "seed": 4, "fleet": [{"profile": "qemu-x86_64", "group": "dut"}],
                   "images": {"base": {"version": "13.4.0"}}, "steps": [{"power_on": {}}]}
