"""A real swtpm on localhost TCP for tests, reached through tpm2-tools' swtpm TCTI."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from eden.agent.tpm import Tpm2Tools


def _two_free_ports() -> int:
    """A port p with p and p+1 free (the swtpm TCTI uses p+1 as control port)."""
    for _ in range(50):
        port = random.randrange(20000, 40000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def swtpm_fixture(tmp_path: Path) -> Iterator[Tpm2Tools]:
    for tool in ("swtpm", "swtpm_setup", "tpm2_quote"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install swtpm swtpm-tools tpm2-tools)")
    state = tmp_path / "tpm"
    state.mkdir()
    subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--create-ek-cert"], check=True,
                   capture_output=True, timeout=120)
    port = _two_free_ports()
    proc = subprocess.Popen(["swtpm", "socket", "--tpmstate", f"dir={state}", "--tpm2",
                             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                             "--flags", "not-need-init,startup-clear"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("swtpm did not start") from None
                time.sleep(0.1)
        yield Tpm2Tools(tcti=f"swtpm:host=127.0.0.1,port={port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
