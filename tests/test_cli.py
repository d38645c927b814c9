"""The ``eden`` command line: validate, schema, run, profiles (exit codes, outputs, result files).

Everything here calls ``eden.cli.main`` in-process except one test that runs the installed console
script in a subprocess to prove the packaging (entry point, ``python -m``) works.

File names given to the CLI are mostly short and relative (tests chdir into tmp_path);
``test_long_paths_are_not_wrapped`` checks that long ones stay on one line too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from eden_subprocess import env, run_eden

from eden import cli

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
PROFILE_FILES = sorted((REPO / "hw_profiles").glob("*.yaml"))
SMOKE = REPO / "scenarios" / "onboarding-smoke.yaml"
PROFILE_NAMES = {"eve-qemu-x86_64", "gateway-arm", "gateway-x86", "nuc-class", "qemu-aarch64", "qemu-x86_64", "rpi4-class"}
ISSUE_RE = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.+)$", re.M)
WALL_CLOCK_KEY = re.compile(r"started|wall|host|pid", re.I)

GOOD = """\
name: good
seed: 1
fleet:
  - profile: qemu-x86_64
    group: dut
images:
  base: {version: 13.4.0}
steps:
  - power_on: {}
expect:
  - {device_state: ONLINE, within: 5m}
"""

# An expectation the product cannot meet: the image 'next' is never installed.
UNMEETABLE = """\
name: cannot-pass
seed: 1
fleet:
  - profile: qemu-x86_64
    group: dut
images:
  base: {version: 13.4.0}
  next: {version: 13.5.0}
steps:
  - power_on: {}
expect:
  - name: running a version never installed
    version: next
    within: 2m
"""

UNKNOWN_KEY = GOOD.replace("expect:\n", "expectt:\n")
BAD_DURATION = GOOD.replace("within: 5m", "within: 5 parsecs")
UNKNOWN_PROFILE = GOOD.replace("qemu-x86_64", "qemu-x86_65")


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _pos(text: str, token: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of ``token`` in ``text``."""
    for n, line in enumerate(text.splitlines(), 1):
        if token in line:
            return n, line.index(token) + 1
    raise AssertionError(f"{token!r} not in text")


def _issues(stderr: str) -> list[dict[str, str]]:
    return [m.groupdict() for m in ISSUE_RE.finditer(stderr)]


def _keys(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every mapping key in a JSON document, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", key
            yield from _keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _keys(value, f"{path}[{i}]")


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables and result lines at a fixed width, whatever COLUMNS the test run has."""
    from rich.console import Console

    monkeypatch.setattr(cli, "out", Console(width=160))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with cwd = tmp_path, so relative names are short and reports/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------ validate --


def test_validate_every_shipped_file(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert SCENARIOS and len(PROFILE_FILES) == 7
    monkeypatch.chdir(REPO)
    files = [str(p.relative_to(REPO)) for p in SCENARIOS + PROFILE_FILES]
    assert cli.main(["validate", *files]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    for f in files:
        assert any(line.startswith(f"{f}: ok (") for line in lines), f"no ok line for {f}:\n{captured.out}"
    assert captured.out.count(": ok (scenario '") == len(SCENARIOS)
    assert captured.out.count(": ok (hardware profile '") == len(PROFILE_FILES)


@pytest.mark.parametrize(
    ("text", "token", "message", "hint"),
    [
        pytest.param(UNKNOWN_KEY, "expectt", "unknown key 'expectt'", "did you mean 'expect'?", id="unknown-key"),
        pytest.param(
            UNKNOWN_PROFILE,
            "qemu-x86_65",
            "unknown hardware profile 'qemu-x86_65'",
            "did you mean 'qemu-x86_64'?",
            id="unknown-profile",
        ),
        # A bad duration has no separate hint line: the message itself shows the accepted forms.
        pytest.param(BAD_DURATION, "5 parsecs", "'5 parsecs' is not a duration; write e.g. 30s", None, id="bad-duration"),
    ],
)
def test_validate_bad_scenario(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], text: str, token: str, message: str, hint: str | None
) -> None:
    _write(in_tmp, "bad.yaml", text)
    assert cli.main(["validate", "bad.yaml"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line, col = _pos(text, token)
    assert f"bad.yaml:{line}:{col}: error: {message}" in captured.err
    if hint is not None:
        assert f"    hint: {hint}" in captured.err.splitlines()
    assert "Traceback" not in captured.err


def test_validate_reports_every_schema_error_with_a_hint(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BAD_DURATION.replace("expect:\n", "expectt:\n").replace("seed: 1", "seed: 1\nduration: soon")
    _write(in_tmp, "bad.yaml", text)
    assert cli.main(["validate", "bad.yaml"]) == 2
    err = capsys.readouterr().err
    issues = _issues(err)
    expected = [("bad.yaml", _pos(text, "duration:")[0]), ("bad.yaml", _pos(text, "expectt")[0])]
    assert [(i["file"], int(i["line"])) for i in issues] == expected
    assert "'soon' is not a duration" in issues[0]["msg"]
    assert re.search(r"^    hint: did you mean 'expect'\?$", err, re.M)


def test_validate_warns_about_an_unknown_config_item_and_passes(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD.replace("steps:\n", "controller:\n  config_items: {timer.metric.intervall: 30}\nsteps:\n")
    _write(in_tmp, "w.yaml", text)
    assert cli.main(["validate", "w.yaml"]) == 0
    captured = capsys.readouterr()
    line, col = _pos(text, "timer.metric.intervall")
    assert f"w.yaml:{line}:{col}: warning: unknown config item 'timer.metric.intervall'" in captured.err
    assert "    hint: did you mean 'timer.metric.interval'?" in captured.err.splitlines()
    assert "w.yaml: ok" in captured.out


def test_validate_several_files_one_bad(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(in_tmp, "a.yaml", GOOD)
    _write(in_tmp, "b.yaml", UNKNOWN_PROFILE)
    shutil.copy(REPO / "hw_profiles" / "nuc-class.yaml", in_tmp / "nuc-class.yaml")  # name must match the stem
    _write(in_tmp, "d.yaml", GOOD.replace("name: good", "name: good-too"))
    assert cli.main(["validate", "a.yaml", "b.yaml", "nuc-class.yaml", "d.yaml"]) == 2
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "a.yaml: ok (scenario 'good', 1 device(s))" in lines
    assert "nuc-class.yaml: ok (hardware profile 'nuc-class')" in lines
    assert "d.yaml: ok (scenario 'good-too', 1 device(s))" in lines
    assert "b.yaml" not in captured.out
    assert [i["file"] for i in _issues(captured.err)] == ["b.yaml"]
    assert "hint: did you mean 'qemu-x86_64'?" in captured.err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(lambda d: None, "file not found", id="missing"),
        pytest.param(lambda d: (d / "x.yaml").mkdir(), "is a directory", id="directory"),
        pytest.param(lambda d: (d / "x.yaml").write_text(""), "file is empty", id="empty"),
        pytest.param(lambda d: (d / "x.yaml").write_text("name: [\n"), "invalid YAML", id="yaml-syntax"),
    ],
)
def test_validate_unreadable_file(in_tmp: Path, capsys: pytest.CaptureFixture[str], setup: Any, message: str) -> None:
    setup(in_tmp)
    assert cli.main(["validate", "x.yaml"]) == 2
    issues = _issues(capsys.readouterr().err)
    assert len(issues) == 1 and issues[0]["file"] == "x.yaml" and message in issues[0]["msg"]


EVE_WITH_IMAGES = """\
name: eve-images
seed: 1
fleet:
  - profile: eve-qemu-x86_64
images:
  eve-13: {version: 13.4.0}
  eve-14: {version: 14.0.0, path: missing-rootfs.img}
steps:
  - power_on: {}
"""


def test_validate_for_qemu_points_at_missing_image_files(in_tmp: Path) -> None:
    """The files a qemu run boots are inputs: ``eden validate --backend qemu`` (a real process, no VM)
    reports a missing ``path:`` image and a missing EDEN_EVE_IMAGE at their place in the file, exit 2."""
    (in_tmp / "x.yaml").write_text(EVE_WITH_IMAGES)
    lines = EVE_WITH_IMAGES.splitlines()
    done = run_eden("validate", "--backend", "qemu", "x.yaml", cwd=in_tmp, env=env(EDEN_EVE_IMAGE="no-such-live.raw"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    found = {(i["line"], i["col"]): i["msg"] for i in _issues(done.stderr) if i["file"] == "x.yaml"}
    path_at = (str(lines.index("  eve-14: {version: 14.0.0, path: missing-rootfs.img}") + 1), str(lines[6].index("missing") + 1))
    profile_at = (str(lines.index("  - profile: eve-qemu-x86_64") + 1), str(lines[3].index("eve-qemu") + 1))
    assert found.keys() == {path_at, profile_at}, done.stderr
    assert found[path_at].startswith("image eve-14: path 'missing-rootfs.img' not found")
    assert found[profile_at] == "EDEN_EVE_IMAGE: EVE image not found (no-such-live.raw)"
    assert run_eden("validate", "x.yaml", cwd=in_tmp).returncode == 0  # the simulator boots no files


def test_long_paths_are_not_wrapped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 3) / "and-another-nested-directory"
    deep.mkdir(parents=True)
    bad = _write(deep, "bad-scenario.yaml", UNKNOWN_PROFILE)
    good = _write(deep, "good-scenario.yaml", GOOD)
    assert cli.main(["validate", str(bad), str(good)]) == 2
    captured = capsys.readouterr()
    assert f"{good}: ok (scenario 'good', 1 device(s))" in captured.out.splitlines()
    assert [i["file"] for i in _issues(captured.err)] == [str(bad)]


# ---------------------------------------------------------- hostile files: a position, never a crash --

BAD_FILES: dict[str, Any] = {
    "nul-byte": lambda d: (d / "x.yaml").write_bytes(GOOD.replace("seed: 1", "seed: 1\x00").encode()),
    "deep-flow": lambda d: (d / "x.yaml").write_text(GOOD + "description: " + "[" * 500 + "]" * 500 + "\n"),
    "deep-block": lambda d: (d / "x.yaml").write_text(GOOD + "metrics:\n" + "".join("  " * i + "-\n" for i in range(1, 1000))),
    "negative-seed": lambda d: (d / "x.yaml").write_text(GOOD.replace("seed: 1", "seed: -1")),
    "long-name": lambda d: (d / "x.yaml").write_text(GOOD.replace("name: good", "name: " + "n" * 300)),
    "dev-zero": lambda d: (d / "x.yaml").symlink_to("/dev/zero"),
    "fifo": lambda d: os.mkfifo(d / "x.yaml"),
    "huge-count": lambda d: (d / "x.yaml").write_text(GOOD.replace("group: dut", "group: dut\n    count: 1000000000")),
}


_SPECIAL = ("fifo", "dev-zero")  # a regression would hang or eat memory: run in a child, with a timeout


@pytest.mark.parametrize(
    ("bad", "command"),
    [(bad, "validate") for bad in sorted(BAD_FILES)] + [(bad, "run") for bad in sorted(BAD_FILES) if bad not in _SPECIAL],
)
def test_bad_file_exits_2_with_a_position(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], bad: str, command: str
) -> None:
    """Each of these once ended in a traceback, a hang, a crash in ``run`` or unbounded memory."""
    BAD_FILES[bad](in_tmp)
    if bad in _SPECIAL:
        done = run_eden(command, "x.yaml", cwd=in_tmp)
        code, stderr = done.returncode, done.stderr
    else:
        code, stderr = cli.main([command, "x.yaml"]), capsys.readouterr().err
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert [i["file"] for i in _issues(stderr)] == ["x.yaml"], stderr
    assert not (in_tmp / "reports").exists()  # nothing ran


def test_validate_reports_unknown_keys_and_cross_checks_together(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = UNKNOWN_KEY.replace("qemu-x86_64", "qemu-x86_65")
    _write(in_tmp, "x.yaml", text)
    assert cli.main(["validate", "x.yaml"]) == 2
    issues = _issues(capsys.readouterr().err)
    assert [(i["msg"], (int(i["line"]), int(i["col"]))) for i in issues] == [
        ("unknown hardware profile 'qemu-x86_65'", _pos(text, "qemu-x86_65")),
        ("unknown key 'expectt'", _pos(text, "expectt")),
    ]


def test_run_refuses_a_negative_seed_option(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", str(SMOKE), "--seed", "-1"])
    assert exc.value.code == 2
    assert "argument --seed: -1 is out of range" in capsys.readouterr().err
    assert not (in_tmp / "reports").exists()


# -------------------------------------------------------------------------------------- schema --


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    props = set(schema["properties"])
    assert {"name", "description", "seed", "duration", "fleet", "controller", "images", "steps", "faults", "expect", "metrics"} <= props
    assert {"name", "fleet", "images"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False


def test_schema_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "--profile"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"name", "arch", "cores", "memory", "storage", "tpm", "firmware", "nics", "boot_time"} <= set(schema["properties"])
    assert "arch" in schema["required"]


def test_schema_accepts_the_shipped_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    cli.main(["schema"])
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    for path in SCENARIOS:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, f"{path.name}: {errors}"
    assert list(validator.iter_errors({**yaml.safe_load(SMOKE.read_text()), "expectt": []}))
    point = {**yaml.safe_load(SMOKE.read_text()), "expect": [{"bricked": False, "always": True, "from": "onbaorded"}]}
    assert list(validator.iter_errors(point))  # a bare point must be one of the point names
    assert not list(validator.iter_errors({**point, "expect": [{"bricked": False, "always": True, "from": "onboarded"}]}))


def test_profile_schema_accepts_the_shipped_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    cli.main(["schema", "--profile"])
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    bad = {p.name: [e.message for e in validator.iter_errors(yaml.safe_load(p.read_text()))] for p in PROFILE_FILES}
    assert not {k: v for k, v in bad.items() if v}


# ----------------------------------------------------------------------------------------- run --


def test_run_smoke_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert cli.main(["run", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "onboarding-smoke - PASSED" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl", "report.html", "run.json", "summary.json"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "passed"
    assert summary["scenario"] == "onboarding-smoke" and summary["seed"] == 1 and summary["devices"] == 1
    assert summary["expectations"] and all(e["status"] == "passed" for e in summary["expectations"])
    wall_clock = [where for where, key in _keys(summary) if WALL_CLOCK_KEY.search(key)]
    assert not wall_clock, f"wall-clock keys in summary.json: {wall_clock}"

    run = json.loads((out / "run.json").read_text())
    assert isinstance(run["wall_seconds"], (int, float)) and run["wall_seconds"] >= 0
    assert run["host"] and run["started"] and run["verdict"] == "passed"
    assert set(run["versions"]) >= {"eden", "simpy", "numpy", "pydantic"}
    assert run["events_file"] == "events.jsonl"

    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == run["timeline_events"]
    assert any(e["what"] == "booted" and e["device"] == "dut-0" for e in events)
    assert all(isinstance(e["t"], (int, float)) for e in events)


def test_run_summary_is_reproducible(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert cli.main(["run", str(SMOKE), "--out", str(tmp_path / name), "--quiet"]) == 0
    assert (tmp_path / "a" / "summary.json").read_bytes() == (tmp_path / "b" / "summary.json").read_bytes()


def test_run_with_progress_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress path (terminal stderr) feeds the backend's progress callback."""
    import io

    from rich.console import Console

    monkeypatch.setattr(cli, "err", Console(file=io.StringIO(), force_terminal=True, width=120))
    assert cli.main(["run", str(SMOKE), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["verdict"] == "passed"


def test_run_failed_expectation(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(in_tmp, "fail.yaml", UNMEETABLE)
    assert cli.main(["run", "fail.yaml", "--out", "out", "--quiet"]) == 1
    assert "cannot-pass - FAILED" in capsys.readouterr().out
    summary = json.loads((in_tmp / "out" / "summary.json").read_text())
    assert summary["verdict"] == "failed"
    (exp,) = summary["expectations"]
    assert exp["status"] == "failed" and exp["name"] == "running a version never installed"
    assert exp["observed"] == {"version": "13.4.0"}
    assert exp["detail"]["why"] == "not met within 120s"
    assert exp["line"] == _pos(UNMEETABLE, "- name: running")[0]
    assert json.loads((in_tmp / "out" / "run.json").read_text())["verdict"] == "failed"


def test_run_nothing_runs_if_any_file_is_invalid(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(in_tmp, "bad.yaml", UNKNOWN_KEY)
    assert cli.main(["run", str(SMOKE), "bad.yaml", "--out", "out", "--quiet"]) == 2
    assert cli.main(["run", str(SMOKE), "bad.yaml", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert not (in_tmp / "out").exists()
    assert not (in_tmp / "reports").exists()
    assert "running" not in captured.err
    assert [i["file"] for i in _issues(captured.err)] == ["bad.yaml", "bad.yaml"]
    assert "hint: did you mean 'expect'?" in captured.err


def test_run_seed_override(tmp_path: Path) -> None:
    assert cli.main(["run", str(SMOKE), "--seed", "4242", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["seed"] == 4242
    assert json.loads((tmp_path / "o" / "run.json").read_text())["seed"] == 4242


def test_run_default_out_dir(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(SMOKE), "--quiet"]) == 0
    (run_dir,) = (in_tmp / "reports").iterdir()
    assert re.fullmatch(r"onboarding-smoke-\d{8}-\d{6}", run_dir.name)
    assert json.loads((run_dir / "summary.json").read_text())["verdict"] == "passed"
    assert (run_dir / "run.json").is_file() and (run_dir / "events.jsonl").is_file()
    assert "results: reports/" in capsys.readouterr().out


def test_run_several_files(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One folder per scenario under reports/run-<time>/; one failure makes the exit code 1."""
    _write(in_tmp, "fail.yaml", UNMEETABLE)
    assert cli.main(["run", str(SMOKE), "fail.yaml", "--quiet"]) == 1
    (root,) = (in_tmp / "reports").iterdir()
    assert re.fullmatch(r"run-\d{8}-\d{6}", root.name)
    assert sorted(p.name for p in root.iterdir()) == ["cannot-pass", "onboarding-smoke"]
    verdicts = {p.name: json.loads((p / "summary.json").read_text())["verdict"] for p in root.iterdir()}
    assert verdicts == {"cannot-pass": "failed", "onboarding-smoke": "passed"}
    out = capsys.readouterr().out
    n_smoke = len(json.loads((root / "onboarding-smoke" / "summary.json").read_text())["expectations"])
    assert "summary" in out and f"{n_smoke}/{n_smoke}" in out and "0/1" in out


def test_run_unwritable_out_dir_is_an_infrastructure_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A harness failure (here: the result folder cannot be created) exits 2, never 1 (= product failed)."""
    (in_tmp / "blocker").write_text("a file, not a folder")
    assert cli.main(["run", str(SMOKE), "--out", "blocker/out", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ profiles --


def test_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert {p.stem for p in PROFILE_FILES} == PROFILE_NAMES
    listed = {name for name in PROFILE_NAMES if re.search(rf"\b{re.escape(name)}\b", out)}
    assert listed == PROFILE_NAMES
    assert "x86_64" in out and "aarch64" in out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", str(SMOKE), "--backend", "nope"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------------------- subprocess --


def _eden_command() -> list[str]:
    """The installed console script next to this interpreter (or on PATH), else ``python -m eden.cli``."""
    script = Path(sys.executable).with_name("eden")
    if script.is_file():
        return [str(script)]
    found = shutil.which("eden")
    return [found] if found else [sys.executable, "-m", "eden.cli"]


def test_console_script(tmp_path: Path) -> None:
    eden = _eden_command()
    done = subprocess.run(
        [*eden, "run", str(SMOKE), "--out", "out", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["verdict"] == "passed"

    _write(tmp_path, "bad.yaml", UNKNOWN_PROFILE)
    done = subprocess.run(
        [sys.executable, "-m", "eden.cli", "validate", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert [i["file"] for i in _issues(done.stderr)] == ["bad.yaml"]
    assert "hint: did you mean 'qemu-x86_64'?" in done.stderr
