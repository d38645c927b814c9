"""The lab services eden starts itself: ser2net 4 serving serial ports on loopback TCP, and
PDUDaemon 1.1 switching power through shell commands (``localcmdline``).

One writer for their configuration files and one wait for them to listen, shared by the stand-in
lab (:mod:`eden.lab.standin_lab`) and the tests' real services (``tests/labtools.py``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from eden.errors import InfrastructureError

START_TIMEOUT = 30.0
HOST = "127.0.0.1"

ConsoleKind = Literal["tcp", "rfc2217"]
"""Raw TCP, or telnet with RFC 2217 serial port control (the URL schemes the console driver takes)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = START_TIMEOUT) -> None:
    """Return once ``port`` on loopback accepts a connection; :class:`InfrastructureError` with the
    end of ``log`` if ``proc`` exits first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise InfrastructureError(f"{what} exited at start (rc={proc.returncode}): {log_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise InfrastructureError(f"{what} did not listen on port {port} within {timeout:.0f} s: {log_tail(log)}")


def log_tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-1500:]
    return ""


@dataclass(frozen=True)
class Ser2netConnection:
    """One serial device served by ser2net on a loopback port."""

    name: str
    port: int
    device: str | Path
    kind: ConsoleKind = "tcp"

    @property
    def url(self) -> str:
        return f"{self.kind}://{HOST}:{self.port}"


def ser2net_config(connections: Iterable[Ser2netConnection]) -> str:
    """ser2net 4's YAML for ``connections``: each device at 115200 8N1 without modem lines
    (``local``), and a new client takes the port over from the one before (``kickolduser``: the
    harness re-attaching wins over its own stale connection). Names become YAML anchors, so a
    ``-`` in one is written ``_``."""
    lines: list[str] = []
    for c in connections:
        accepter = "telnet(rfc2217),tcp" if c.kind == "rfc2217" else "tcp"
        lines += [f"connection: &{c.name.replace('-', '_')}",
                  f"  accepter: {accepter},{HOST},{c.port}",
                  f"  connector: serialdev,{c.device},115200n81,local",
                  "  options:",
                  "    kickolduser: true"]
    return "".join(line + "\n" for line in lines)


def ser2net_argv(exe: str, config: Path, pidfile: Path) -> list[str]:
    """ser2net in the foreground (``-n``), without UUCP lock files in /var/lock (``-u``)."""
    return [exe, "-n", "-u", "-c", str(config), "-P", str(pidfile)]


def pdudaemon_config(port: int, pdu: str, cmd_on: str, cmd_off: str, *, logging_level: str = "INFO",
                     retries: int | None = None, retrydelay: int | None = None) -> str:
    """PDUDaemon's JSON config: its HTTP listener on loopback ``port`` and one ``localcmdline`` PDU
    named ``pdu``, whose commands get the PDU port number for ``%s``. ``retries`` and ``retrydelay``
    (seconds) are PDUDaemon's own (5 and 5 when not given); it ignores a command's exit status."""
    driver: dict[str, object] = {"driver": "localcmdline", "cmd_on": cmd_on, "cmd_off": cmd_off}
    if retries is not None:
        driver["retries"] = retries
    if retrydelay is not None:
        driver["retrydelay"] = retrydelay
    conf = {"daemon": {"hostname": HOST, "port": port, "logging_level": logging_level, "listener": "http"},
            "pdus": {pdu: driver}}
    return json.dumps(conf, indent=2)
