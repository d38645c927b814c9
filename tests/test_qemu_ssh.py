"""ssh.py's retry logic against real local TCP endpoints (the end-to-end SSH check into a real guest
is in test_qemu_machine.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest

from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError
from eden.runtime.ssh import Ssh, SshKey


def test_generated_key_loads_and_is_private(tmp_path: Path) -> None:
    key = SshKey.generate(tmp_path / "k")
    assert key.public_line.startswith("ssh-ed25519 ")
    assert (key.private.stat().st_mode & 0o077) == 0
    assert isinstance(key.load(), paramiko.Ed25519Key)


def _closing_server(sock: socket.socket, stop: threading.Event, accepted: list[float]) -> None:
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        accepted.append(time.monotonic())
        conn.close()  # what a forwarded port does while sshd in the guest is not up yet


def test_connect_retries_until_the_deadline_against_an_endpoint_that_closes(tmp_path: Path) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()
    accepted: list[float] = []
    thread = threading.Thread(target=_closing_server, args=(srv, stop, accepted), daemon=True)
    thread.start()
    try:
        ssh = Ssh(port, SshKey.generate(tmp_path))
        t0 = time.monotonic()
        with pytest.raises(InfrastructureError, match="no usable sshd after") as info:
            asyncio.run(ssh.connect(Deadline(2.0), retry_every=0.2))
        took = time.monotonic() - t0
    finally:
        stop.set()
        thread.join(5)
        srv.close()
    assert ssh.attempts >= 3 and len(accepted) >= 3
    assert 1.5 <= took <= 4.0
    assert "last error" in str(info.value)


def test_connect_retries_while_nothing_listens(tmp_path: Path) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # now refused
    ssh = Ssh(port, SshKey.generate(tmp_path))
    with pytest.raises(InfrastructureError, match="Unable to connect"):
        asyncio.run(ssh.connect(Deadline(1.0), retry_every=0.1))
    assert ssh.attempts >= 3


def test_run_without_connect_is_an_infrastructure_error(tmp_path: Path) -> None:
    ssh = Ssh(1, SshKey.generate(tmp_path))
    with pytest.raises(InfrastructureError, match="not connected"):
        asyncio.run(ssh.run("true", Deadline(1)))
