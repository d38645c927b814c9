"""Real lab services for tests: PDUDaemon, ser2net and labgrid's coordinator and exporter on loopback,
and ptys standing in for serial ports.

All are the real programs (``scripts/install-system-deps`` installs them: ser2net from Debian,
PDUDaemon into ``.tools/pdudaemon``, labgrid into ``.tools/labgrid``); a missing one fails the test
with that hint. Each
service runs in its own session with ``LABTOOLS_MARK`` in its environment, so a test can check
that nothing it started is left (:func:`leakcheck.marked_processes`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import tty
import uuid
from pathlib import Path

from leakcheck import marked_processes

from eden.lab.services import (Ser2netConnection, free_port, pdudaemon_config, ser2net_argv, ser2net_config,
                                wait_listening)

ROOT = Path(__file__).resolve().parent.parent
PDUDAEMON = ROOT / ".tools" / "pdudaemon" / "bin" / "pdudaemon"
LABGRID_BIN = ROOT / ".tools" / "labgrid" / "bin"
MARK = "LABTOOLS_MARK"
INSTALL_HINT = "run scripts/install-system-deps (as root)"
START_TIMEOUT = 15.0


class _Service:
    """A started program, always stopped (SIGTERM, then SIGKILL) and reaped by :meth:`stop`."""

    def __init__(self, argv: list[str], log: Path, *, cwd: Path | None = None) -> None:
        self.mark = uuid.uuid4().hex
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, MARK: self.mark}, cwd=cwd)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in marked_processes(MARK, self.mark):  # children of the service (a PDU command)
            os.kill(pid, signal.SIGKILL)

    def leftovers(self) -> set[int]:
        return marked_processes(MARK, self.mark)


class PduDaemon(_Service):
    """PDUDaemon with an HTTP listener and one ``localcmdline`` PDU, ``PDU``, whose on/off commands
    write ``on``/``off`` into ``state_dir/port<N>``."""

    PDU = "lab-pdu"

    def __init__(self, tmp: Path) -> None:
        assert PDUDAEMON.exists(), f"PDUDaemon is missing ({PDUDAEMON}): {INSTALL_HINT}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = tmp / "pdu-state"
        self.state_dir.mkdir()
        config = tmp / "pdudaemon.conf"
        config.write_text(pdudaemon_config(self.port, self.PDU, f"echo on > {self.state_dir}/port%s",
                                           f"echo off > {self.state_dir}/port%s", logging_level="DEBUG",
                                           retries=1, retrydelay=0))
        log = tmp / "pdudaemon.log"
        super().__init__([str(PDUDAEMON), "--conf", str(config), "--logfile", str(log)], tmp / "pdudaemon.out")
        wait_listening(self.port, self.proc, "PDUDaemon", self.log, START_TIMEOUT)

    def state(self, port: int | str) -> str | None:
        path = self.state_dir / f"port{port}"
        return path.read_text().strip() if path.exists() else None


class Ser2net(_Service):
    """ser2net 4 serving each ``name -> (kind, device)`` on a free loopback port; kind is ``raw`` or
    ``rfc2217``. ``ports[name]`` and ``urls[name]`` say where."""

    def __init__(self, tmp: Path, connections: dict[str, tuple[str, str]]) -> None:
        exe = shutil.which("ser2net") or shutil.which("ser2net", path="/usr/sbin:/sbin")
        assert exe, f"ser2net is missing: {INSTALL_HINT} (Debian package ser2net)"
        served = [Ser2netConnection(name, free_port(), device, "tcp" if kind == "raw" else "rfc2217")
                  for name, (kind, device) in connections.items()]
        self.ports: dict[str, int] = {c.name: c.port for c in served}
        self.urls: dict[str, str] = {c.name: c.url for c in served}
        config = tmp / "ser2net.yaml"
        config.write_text(ser2net_config(served))
        super().__init__(ser2net_argv(exe, config, tmp / "ser2net.pid"), tmp / "ser2net.log")
        for port in self.ports.values():
            wait_listening(port, self.proc, "ser2net", self.log, START_TIMEOUT)


def labgrid_tool(name: str) -> Path:
    exe = LABGRID_BIN / name
    assert exe.exists(), f"labgrid is missing ({exe}): {INSTALL_HINT}"
    return exe


class LabgridCoordinator(_Service):
    """labgrid-coordinator on a free loopback port (its state files in ``tmp/coordinator``);
    :meth:`client` runs labgrid-client against it, as a lab admin would."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        work = tmp / "coordinator"
        work.mkdir()
        super().__init__([str(labgrid_tool("labgrid-coordinator")), "-l", self.address], tmp / "coordinator.log",
                         cwd=work)
        wait_listening(self.port, self.proc, "labgrid-coordinator", self.log, START_TIMEOUT)

    def client(self, *args: str, user: str = "admin", check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LG_USERNAME": user, MARK: self.mark}
        done = subprocess.run([str(labgrid_tool("labgrid-client")), "-x", self.address, *args], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if check:
            assert done.returncode == 0, f"labgrid-client {' '.join(args)}: {done.stdout}{done.stderr}"
        return done


class LabgridExporter(_Service):
    """labgrid-exporter ``name`` publishing ``groups`` (group -> resource class -> parameters) to the
    coordinator, with loopback as its host name; returns once the coordinator lists them all."""

    def __init__(self, tmp: Path, coordinator: LabgridCoordinator, name: str,
                 groups: dict[str, dict[str, dict[str, object]]]) -> None:
        config = tmp / f"exporter-{name}.yaml"
        config.write_text(json.dumps(groups))  # JSON is YAML
        super().__init__([str(labgrid_tool("labgrid-exporter")), "-c", coordinator.address, "-n", name,
                          "--hostname", "127.0.0.1", str(config)], tmp / f"exporter-{name}.log", cwd=tmp)
        want = {f"{name}/{group}/{cls}" for group, resources in groups.items() for cls in resources}
        end = time.monotonic() + 20
        while True:
            listed = set(coordinator.client("resources", check=False).stdout.split())
            if want <= listed:
                return
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"exporter {name}: {sorted(want - listed)} not published:\n"
                                     f"{self.log.read_text()[-2000:]}")
            time.sleep(0.2)


class Pty:
    """A pty whose slave is reached through a symlink, as a board's UART is through its by-id link.

    The test plays the board on ``master``; :meth:`vanish` is the USB adapter unplugged (the link
    dangles, readers of the old slave get EIO) and :meth:`replug` a new device behind the same link.
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.replug()

    def replug(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        os.close(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path)
        tmp.replace(self.link)  # atomic, as udev does it

    def vanish(self) -> None:
        self.link.unlink(missing_ok=True)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_until(self, want: bytes, timeout: float = 5.0) -> bytes:
        """Bytes from the master until ``want`` is among them (or the timeout: then what came)."""
        os.set_blocking(self.master, False)
        got = b""
        end = time.monotonic() + timeout
        while want not in got and time.monotonic() < end:
            try:
                got += os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                time.sleep(0.01)
        return got

    def close(self) -> None:
        self.vanish()


def open_fds() -> set[str]:
    """This process's open file descriptors, with what they point at (for leak checks)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with_target = fd
        try:
            with_target += " -> " + os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        found.add(with_target)
    return found
