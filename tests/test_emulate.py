"""``eden emulate`` against the real controller (``eden controller serve`` subprocess): real TLS,
real signatures, SQLite; the emulator runs as its own process, as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from eden_subprocess import argv

from eden.controller.client import AdminClient, AdminError
from eden.controller.setup import init
from eden.controller.testing import ServeProcess
from eden.emulate.recorder import Recorder, is_error, percentiles_ms

EMULATE = argv("emulate")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("emu") / "ctl"
    init(root)
    with ServeProcess(root) as proc:
        yield proc


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([*EMULATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_fifty_devices_onboard_and_poll_config(server: ServeProcess, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    res = _run(["--count", "50", "--controller-dir", str(server.layout.root), "--duration", "10", "--ramp", "2",
                "--config-item", "timer.config.interval=5", "--serial-prefix", "t1-", "--no-live", "--json", str(summary_file)],
               timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    s: dict[str, Any] = json.loads(summary_file.read_text())
    assert s["devices"]["started"] == 50 and s["devices"]["onboarded"] == 50 and s["devices"]["failed"] == 0
    assert s["devices"]["onboard_all_s"] is not None and s["devices"]["onboard_all_s"] < 10
    assert s["total"]["errors"] == 0 and s["result"] == "ok" and s["completed"]
    eps = s["endpoints"]
    for kind in ("register", "uuid"):
        assert eps[kind]["requests"] == 50, kind
    assert eps["certs"]["requests"] == 100  # EVE: the client's fetch, then zedagent's at its start
    assert eps["register"]["status"] == {"201": 50}
    # 50 devices polling every U(0.3, 1) x 5 s for ~8 s after onboarding: ~15/s expected
    assert eps["config"]["requests"] >= 50 + 50, eps["config"]
    assert eps["config"]["window_requests"] > 60 and eps["config"]["rate_per_s"] > 6
    for kind, e in eps.items():
        if e["window_requests"]:
            assert 0 < e["p50_ms"] <= e["p95_ms"] <= e["p99_ms"] <= e["max_ms"] < 5000, (kind, e)
    assert s["window"]["steady"] and s["window"]["start_s"] == 2
    assert s["config_items"] == {"timer.config.interval": 5}
    assert s["rss"]["per_device_kb"] > 0 and s["startup"]["identities_s"] > 0
    # the controller saw the same devices and the configItem
    admin = server.admin()
    devices = {d["serial"]: d for d in admin.devices() if d["serial"].startswith("t1-")}
    assert len(devices) == 50 and all(d["onboarded"] for d in devices.values())
    assert admin.request("GET", "/v1/settings")["global_items"]["timer.config.interval"] == 5
    assert s["controller_stats"]["config"]["requests"] >= eps["config"]["requests"]
    assert "config" in res.stdout and "result: ok" in res.stdout


@pytest.mark.slow
def test_sigint_stops_cleanly_with_a_summary(server: ServeProcess, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    proc = subprocess.Popen([*EMULATE, "--count", "20", "--controller-dir", str(server.layout.root), "--duration", "120",
                             "--ramp", "1", "--serial-prefix", "t2-", "--no-live", "--json", str(summary_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first progress line (after ~5 s)
        if not line.startswith("t="):
            proc.kill()
            raise AssertionError(line + (proc.communicate(timeout=10)[1] or ""))
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        rc = proc.wait(timeout=20)
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0
    s = json.loads(summary_file.read_text())
    assert s["interrupted_by"] == "SIGINT" and not s["completed"] and s["devices"]["onboarded"] == 20
    assert s["duration_s"] < 60 and s["total"]["errors"] == 0
    # the controller still serves and holds no half-done device
    assert all(d["onboarded"] for d in server.admin().devices() if d["serial"].startswith("t2-"))


def test_unreachable_controller_and_bad_input_exit_2(server: ServeProcess, tmp_path: Path) -> None:
    root = server.layout.root
    common = ["--root-cert", str(root / "root-certificate.pem"), "--onboard-cert", str(root / "onboard.cert.pem"),
              "--onboard-key", str(root / "onboard.key.pem")]
    res = _run(["--count", "2", "--controller", "https://127.0.0.1:1", *common, "--duration", "1"], timeout=30)
    assert res.returncode == 2 and "unreachable" in res.stderr, res.stderr
    res = _run(["--count", "2", "--controller-dir", str(root), "--config-item", "timer.config.interval=1"], timeout=30)
    assert res.returncode == 2 and "minimum" in res.stderr, res.stderr
    res = _run(["--count", "0", "--controller-dir", str(root)], timeout=30)
    assert res.returncode == 2 and "--count" in res.stderr
    res = _run(["--count", "2", "--controller", server.info["api_url"], "--config-item", "timer.config.interval=5", *common], timeout=30)
    assert res.returncode == 2 and "--controller-dir" in res.stderr
    res = _run(["--count", "2", "--controller-dir", str(root), "--profile", "no-such"], timeout=30)
    assert res.returncode == 2 and "no-such" in res.stderr


def test_bulk_preregister_is_one_checked_transaction(server: ServeProcess) -> None:
    admin: AdminClient = server.admin()
    before = len(admin.devices())
    with pytest.raises(AdminError) as bad:
        admin.preregister_many([{"serial": "b-1"}, {"serial": ""}])
    assert bad.value.status == 400
    with pytest.raises(AdminError):
        admin.preregister_many([{"serial": "b-1", "images": {"base": {"version": "1"}}}])  # no measurement
    assert len(admin.devices()) == before  # nothing half-added
    assert admin.preregister_many([{"serial": "b-1"}, {"serial": "b-2", "learn": True}]) == {"created": 2, "updated": 0}
    assert admin.preregister_many([{"serial": "b-2", "firmware": "fw"}]) == {"created": 0, "updated": 1}
    assert admin.device("b-2")["firmware"] == "fw" and len(admin.devices()) == before + 2
    with pytest.raises(AdminError):
        admin.request("POST", "/v1/bulk/devices", {"devices": "nope"})


def test_recorder_window_percentiles_and_errors() -> None:
    r = Recorder(clock=lambda: 0.0)
    for i in range(100):
        r.add("config", float(i), (i + 1) / 1000, 200 if i % 10 else 304, None)
    r.add("config", 50.5, 1.0, 0, "refused")
    r.add("info", 5.0, 0.002, 503, None)
    s = r.summary(10.0, 60.0)
    c = s["config"]
    assert c["requests"] == 101 and c["window_requests"] == 51 and c["rate_per_s"] == pytest.approx(51 / 50)
    assert c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"] <= c["max_ms"] == 1000.0
    assert c["errors"] == {"refused": 1} and c["status"]["0"] == 1 and s["info"]["window_requests"] == 0
    assert r.errors() == 2 and r.total() == 102
    assert is_error(0) and is_error(503) and not is_error(304) and not is_error(403)
    assert percentiles_ms(np.empty(0))["p99_ms"] is None
