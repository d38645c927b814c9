"""`eden controller ...` commands: init, device-config and the admin wrappers."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from eden.cli import main
from eden.controller.layout import Layout
from eden.controller.testing import ServeProcess
from eden.wire import pki


def test_init_creates_pki_and_refuses_a_second_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "c"
    assert main(["controller", "init", str(root), "--server", "ctl.example:8443", "--san", "10.1.2.3"]) == 0
    layout = Layout(root)
    assert stat.S_IMODE(layout.token.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.key("onboard").stat().st_mode) == 0o600
    ca = pki.load_cert(layout.root_cert)
    tls = pki.load_cert(layout.cert("tls"))
    assert pki.is_issued_by(tls, ca) and pki.is_issued_by(pki.load_cert(layout.cert("signing")), ca)
    san = str(tls.extensions.get_extension_for_class(pki.x509.SubjectAlternativeName).value)
    assert all(name in san for name in ("localhost", "127.0.0.1", "ctl.example", "10.1.2.3"))
    assert json.loads(layout.config.read_text())["server"] == "ctl.example:8443"
    capsys.readouterr()
    assert main(["controller", "init", str(root)]) == 2
    assert "already" in capsys.readouterr().out


def test_device_config_writes_the_config_partition_and_preregisters(tmp_path: Path) -> None:
    root, out = tmp_path / "c", tmp_path / "cfg"
    assert main(["controller", "init", str(root)]) == 0
    assert main(["controller", "device-config", "--dir", str(root), "--serial", "S-9", "--out", str(out)]) == 0
    assert (out / "server").read_text().strip() == "localhost:8443"
    assert (out / "root-certificate.pem").read_bytes() == (root / "root-certificate.pem").read_bytes()
    assert (out / "v2tlsbaseroot-certificates.pem").exists() and (out / "onboard.cert.pem").exists()
    assert stat.S_IMODE((out / "onboard.key.pem").stat().st_mode) == 0o600
    with ServeProcess(root) as server:
        assert [d["serial"] for d in server.admin().devices()] == ["S-9"]


def test_admin_subcommands_against_a_running_controller(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "c"
    assert main(["controller", "init", str(root)]) == 0
    assert main(["controller", "devices", "--dir", str(root)]) == 2  # not running
    with ServeProcess(root):
        d = ["--dir", str(root)]
        assert main(["controller", "preregister", *d, "S1", "--firmware", "fw", "--image", "eve=1.0:m1", "--config", "{}"]) == 0
        assert main(["controller", "set-items", *d, "a.b=1", "--serial", "S1"]) == 0
        assert main(["controller", "set-items", *d, "timer.config.interval=9"]) == 0
        assert main(["controller", "baseos", *d, "S1", "eve-2", "2.0"]) == 0
        for cmd in ("retry-update", "reboot", "shutdown"):
            assert main(["controller", cmd, *d, "S1"]) == 0
        assert main(["controller", "app", *d, "S1", "web", '{"memory": 1048576, "cpus": 1}']) == 0
        assert main(["controller", "app", *d, "S1", "web", "--remove"]) == 0
        assert main(["controller", "templates", *d]) == 0
        assert main(["controller", "approve", *d, "99"]) == 2  # no such template
        assert main(["controller", "stats", *d]) == 0
        capsys.readouterr()
        assert main(["controller", "device", *d, "S1"]) == 0
        view = json.loads(capsys.readouterr().out)
        assert view["items"] == {"a.b": 1} and view["baseos"]["retry"] == 1 and view["reboot"] == 1
        assert view["shutdown"] == 1 and view["apps"] == {} and view["images"] == {"eve": {"version": "1.0", "measurement": "m1"}}
        assert main(["controller", "device-config", *d, "--serial", "S-live", "--out", str(tmp_path / "cfg")]) == 0
        capsys.readouterr()
        assert main(["controller", "events", *d]) == 0
        kinds = [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()]
        assert kinds[0] == "preregistered" and "admin_baseos" in kinds and kinds.count("admin_app") == 2
        assert kinds.count("preregistered") == 2  # device-config went through the running controller


def test_a_second_server_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "c"
    assert main(["controller", "init", str(root)]) == 0
    with ServeProcess(root) as first:
        second = subprocess.run(
            [sys.executable, "-m", "eden.cli", "controller", "serve", str(root), "--listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 2
        assert "already serving" in second.stderr + second.stdout
        assert first.proc is not None
        assert json.loads((root / "serve.json").read_text())["pid"] == first.proc.pid  # left intact


def test_serve_refuses_an_uninitialised_dir_and_bad_listen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "serve", str(tmp_path / "nothing")]) == 2
    root = tmp_path / "c"
    assert main(["controller", "init", str(root)]) == 0
    assert main(["controller", "serve", str(root), "--listen", "no-port"]) == 2
    assert "HOST:PORT" in capsys.readouterr().out
