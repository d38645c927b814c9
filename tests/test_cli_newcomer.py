"""A newcomer's first commands: ``--version``, the ``--backend`` help, ``eden
profiles`` through a pipe, ``eden schema | head`` and the HTML page of a single ``eden run``. Run as
real processes where the behaviour is the process's (pipes, exit codes, stderr)."""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path

import yaml

from eden import cli
from eden_subprocess import argv, env, run_eden

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "scenarios" / "onboarding-smoke.yaml"


def _eden(*args: str) -> subprocess.CompletedProcess[str]:
    """``eden *args`` in an 80-column terminal."""
    return run_eden(*args, env=env(COLUMNS="80"))


def test_version() -> None:
    done = _eden("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"eden {version('eden')}"


def test_backend_option_is_explained() -> None:
    done = _eden("run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for backend in ("sim", "emulated", "qemu"):
        assert f"{backend} = " in text, text


def test_profiles_through_a_pipe_are_not_cut_at_80_columns() -> None:
    done = _eden("profiles")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    names = {p.stem for p in (REPO / "hw_profiles").glob("*.yaml")}
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == len(names), done.stdout  # one line per profile: nothing wrapped
    assert {row.split("│")[1].strip() for row in rows} == names
    for path in (REPO / "hw_profiles").glob("*.yaml"):
        nics = ", ".join(n["name"] for n in yaml.safe_load(path.read_text())["nics"])
        assert any(nics in row for row in rows), (nics, done.stdout)
    assert "…" not in done.stdout
    assert max(len(line) for line in lines) > 80


def test_schema_into_a_closed_pipe_is_quiet() -> None:
    """``eden schema | head -1``: the reader leaves after one line; no traceback, no error line."""
    proc = subprocess.Popen(argv("schema"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read().decode()
    rc = proc.wait(60)
    assert first.strip() == b"{"
    assert err == "", err
    assert rc == 141
    # The schema is larger than a pipe's 64 KiB buffer, so the write did meet the closed pipe.
    assert len(_eden("schema").stdout.encode()) > 65536


def test_run_writes_an_html_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli.main(["run", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    page = (out / "report.html").read_text()
    assert "onboarding-smoke" in page and "<table" in page
    assert 'href="./summary.json"' in page  # the entry links the run's own files
    assert 'href="junit.xml"' not in page  # and no report a single run does not write
    again = tmp_path / "again"
    assert cli.main(["run", str(SMOKE), "--out", str(again), "--quiet", "--no-html"]) == 0
    assert not (again / "report.html").exists()


def test_schema_out_writes_the_file_the_editor_set_up_names(tmp_path: Path) -> None:
    """docs/scenario-language.md points editors at ``eden-scenario.schema.json`` in the repository
    root; the command it gives must exist and write exactly what ``eden schema`` prints."""
    import json
    import re

    doc = (REPO / "docs" / "scenario-language.md").read_text(encoding="utf-8")
    (modeline,) = set(re.findall(r"yaml-language-server: \$schema=(\S+)", doc))
    name = Path(modeline).name
    assert (REPO / "scenarios" / modeline).resolve() == REPO / name  # resolved from scenarios/
    assert f"eden schema --out {name}" in doc
    assert f"eden schema --out {name}" in (REPO / "README.md").read_text(encoding="utf-8")
    target = tmp_path / name
    done = _eden("schema", "--out", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert json.loads(target.read_text()) == json.loads(_eden("schema").stdout)
    bad = _eden("schema", "--out", str(tmp_path / "missing-dir" / name))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "error:" in bad.stderr
