"""The agent against the real controller (``eden controller serve`` in a subprocess): onboarding
over real TLS with real signatures both ways, attestation, a configItem change applied, and the
CLI with one controller URL per network port."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from eden.agent.driver import AgentDriver, Outcome, PortUrls
from eden.agent.spec import AgentSpec
from eden.agent.state import StateDir
from eden.agent.tpm import SoftTpm
from eden.agent.transport import DeviceLink, Transport, image_map
from eden_subprocess import argv
from swtpm import swtpm_fixture as swtpm  # noqa: F401 - a fixture

EDEN = argv()


class Controller:
    def __init__(self, root: Path, proc: subprocess.Popen[bytes], info: dict[str, Any]) -> None:
        self.dir = root
        self.proc = proc
        self.url: str = info["api_url"]

    def admin(self, *args: str) -> Any:
        cmd, rest = args[0], args[1:]
        res = subprocess.run([*EDEN, "controller", cmd, "--dir", str(self.dir), *rest], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout) if res.stdout.strip().startswith(("{", "[")) else res.stdout

    def device_config(self, serial: str, out: Path) -> Path:
        res = subprocess.run([*EDEN, "controller", "device-config", "--dir", str(self.dir), "--serial", serial, "--out", str(out)],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        return out


def _stderr_of_stopped(proc: subprocess.Popen[bytes]) -> bytes:
    """The process's stderr, after stopping it (reading a live process's pipe to EOF would block)."""
    if proc.poll() is None:
        proc.kill()
    try:
        return proc.communicate(timeout=10)[1] or b""
    except (subprocess.TimeoutExpired, ValueError):
        return b""


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    root = tmp_path_factory.mktemp("ctl") / "ctl"
    subprocess.run([*EDEN, "controller", "init", str(root), "--server", "127.0.0.1:0"], check=True, capture_output=True, timeout=30)
    proc = subprocess.Popen([*EDEN, "controller", "serve", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90  # generous: CI runs this next to VMs and background suites
        serve = root / "serve.json"
        while not serve.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"controller did not start: {_stderr_of_stopped(proc)!r}")
            time.sleep(0.05)
        yield Controller(root, proc, json.loads(serve.read_text()))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("tpm_kind", ["soft", "swtpm"])
def test_onboarding_attestation_and_config_change(controller: Controller, tmp_path: Path, tpm_kind: str,
                                                  request: pytest.FixtureRequest) -> None:
    """With the soft TPM and with a real swtpm through tpm2-tools (the QEMU guest's path): the
    agent posts its certs, quotes in binary and the controller verifies the quote."""
    serial = f"e2e-{tpm_kind}"
    tpm = request.getfixturevalue("swtpm") if tpm_kind == "swtpm" else SoftTpm()
    controller.admin("preregister", serial, "--learn", "--config", json.dumps({"items": {"timer.config.interval": 5}}))
    cfg = controller.device_config(serial, tmp_path / "config")
    spec = AgentSpec.model_validate(
        {"serial": serial, "profile": "qemu-x86_64", "image": "base", "images": {"base": {"version": "13.4.0"}}, "boot_time": 1.0}
    )
    state = StateDir(tmp_path / "dev")
    state.init(spec)
    state.write_controller_config(
        root_pem=(cfg / "root-certificate.pem").read_bytes(),
        onboard_cert_pem=(cfg / "onboard.cert.pem").read_bytes(),
        onboard_key_pem=(cfg / "onboard.key.pem").read_bytes(),
    )
    cc = state.controller_config()
    events: list[dict[str, Any]] = []

    def seen(what: str) -> bool:
        return any(e["what"] == what for e in events)

    async def scenario() -> Outcome:
        async with Transport(cc.root_pem) as tr:
            drv = AgentDriver(
                spec=spec, params=spec.node_params(), state=state, transport=tr,
                link=DeviceLink(device=state.device_identity(), onboard=cc.onboard, images=image_map(list(spec.images))),
                urls=PortUrls(default=controller.url),
                events=lambda dev, what, data: events.append({"what": what, "data": dict(data)}),
                tpm=tpm,
            )
            drv.start()
            await _until(lambda: seen("onboarded") and seen("attested"), 30, "onboarded + attested")
            node = drv.node
            assert node is not None
            await _until(lambda: node.item("timer.config.interval") == 5, 10, "first config")
            proc = await asyncio.create_subprocess_exec(
                *EDEN, "controller", "set-items", "--dir", str(controller.dir), "--serial", serial, "timer.config.interval=6",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            assert proc.returncode == 0, err
            await _until(lambda: node.item("timer.config.interval") == 6, 15, "changed config applied")
            saved = state.load()
            assert saved is not None and saved.persist.items.get("timer.config.interval") == 6  # persisted at once
            assert saved.persist.uuid == node.persist.uuid
            drv.power_off()
            return await drv.wait()

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == Outcome("off")
    dev = controller.admin("device", serial)
    assert dev["registered"] and dev["onboarded"] and dev["uuid"] == state.load().persist.uuid  # type: ignore[union-attr]
    assert dev["info"]["state"] == "ONLINE" and dev["info"]["sw"][0]["version"] == "13.4.0"
    assert [r["code"] for r in dev["attestation"]["results"]][:2] == ["SUCCESS", "SUCCESS"]
    assert dev["attestation"]["results"][0]["tpm"] and dev["attestation"]["escrowed"]
    ek = ["DEVICE_ENDORSEMENT_RSA"] if tpm_kind == "swtpm" else []  # a real TPM has an EK, the soft one not
    assert dev["certs"]["types"] == sorted(["DEVICE_ECDH_EXCHANGE", "DEVICE_RESTRICTED_SIGNING", *ek])
    assert [e["data"]["status"] for e in events if e["what"] == "certs_posted"] == [201]
    assert events[events.index(next(e for e in events if e["what"] == "booted"))]["data"]["reason"] == "FIRST"


def test_cli_onboards_through_the_working_port(controller: Controller, tmp_path: Path) -> None:
    serial = "e2e-2"
    controller.admin("preregister", serial, "--learn")
    cfg = controller.device_config(serial, tmp_path / "config")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(
        {"serial": serial, "profile": "qemu-x86_64", "image": "base", "images": {"base": {"version": "13.4.0"}}, "boot_time": 1.0}
    ))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.Popen(
        [*EDEN, "agent", "--state-dir", str(tmp_path / "dev"), "--spec", str(spec_file), "--config-dir", str(cfg), "--once",
         "--port-url", f"eth0={dead}", "--port-url", f"eth1={controller.url}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    lines: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while not any(e["what"] == "onboarded" for e in lines):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError(f"no onboarding; events {lines}, stderr {_stderr_of_stopped(proc)!r}")
            lines.append(json.loads(line))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        lines += [json.loads(x) for x in proc.stdout.read().splitlines()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert all(e["device"] == serial and isinstance(e["t"], float) for e in lines)
    assert lines[-1]["what"] == "agent_exit" and lines[-1]["data"]["outcome"] == "off"
    assert controller.admin("device", serial)["onboarded"] is True
