"""A lab of stand-in boards (:mod:`eden.lab.standin`) behind a real PDUDaemon and a real ser2net.

``eden lab standin DIR --places N`` (and the tests) build one: N board daemons, one PDUDaemon
whose ``localcmdline`` PDU switches board k on port k, one ser2net serving board k's serial adapter
(its ``tty`` link) on its own TCP port, and ``DIR/lab.yaml`` describing it all to the board
backend: power through PDUDaemon, console ``tcp://`` (or ``rfc2217://``) through ser2net, a media
device (the board's ``disk.img``) and a link command per place. The backend sees nothing else of
it. What differs from a real lab, and only because a stand-in runs under TCG on a shared host:
each place's ``timing_scale`` (the deadline stretch the ``qemu`` backend uses), and
``controller_hosts`` (QEMU's user networks show the host at a different address per port).

Everything is started in its own session and stopped by :meth:`StandinLab.close`, which also
kills what a crashed start left (no process outlives the lab).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from eden.errors import InfrastructureError
from eden.lab.services import (START_TIMEOUT, Ser2netConnection, free_port, log_tail, pdudaemon_config,
                                ser2net_argv, ser2net_config, wait_listening)
from eden.lab.standin import BoardHardware, command

REPO = Path(__file__).resolve().parents[2]
PDUDAEMON_ENV = "EDEN_PDUDAEMON"
EVE_BOARD_MEMORY_MB = 1024
"""An EVE stand-in board's memory: enough for OVMF and a boot loader under TCG; a real EVE
image wants its profile's 4 GiB (give the board more by editing its board.json)."""


def pdudaemon_binary() -> str:
    """PDUDaemon as ``scripts/install-system-deps`` installs it (its own venv under ``.tools``)."""
    for candidate in (os.environ.get(PDUDAEMON_ENV, ""), str(REPO / ".tools" / "pdudaemon" / "bin" / "pdudaemon"),
                      shutil.which("pdudaemon") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise InfrastructureError("PDUDaemon is not installed (run scripts/install-system-deps as root, or set EDEN_PDUDAEMON)")


def ser2net_binary() -> str:
    for candidate in (shutil.which("ser2net"), "/usr/sbin/ser2net"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise InfrastructureError("ser2net is not installed (run scripts/install-system-deps as root)")


@dataclass
class StandinLab:
    """A running stand-in lab; :attr:`lab_file` is what ``--lab`` takes."""

    root: Path
    places: list[str]
    lab_file: Path
    boards: dict[str, Path]
    pdu_port: int
    console_ports: dict[str, int]
    ssh_ports: dict[str, int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def board(self, place: str, *words: str) -> dict[str, object]:
        """A command to a place's board daemon (fault injection: ``replug``, ``unplug``...)."""
        return command(self.boards[place], *words)

    def close(self) -> None:
        for place, board in self.boards.items():
            with contextlib.suppress(OSError, ValueError):
                command(board, "quit", timeout=20.0)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + 10
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, end - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # the group: QEMU and swtpm under a board daemon too
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        self.procs.clear()

    def __enter__(self) -> StandinLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A lab process in its own session that the kernel kills if this process dies first."""
    from eden.runtime.procs import with_parent_death_signal

    out = open(log, "ab")
    try:
        return subprocess.Popen(with_parent_death_signal(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    finally:
        out.close()


def build_standin_lab(root: Path, profiles: int | list[str] = 2, *, name: str = "standin",
                      console: Literal["tcp", "rfc2217"] = "tcp", timing_scale: float | None = None,
                      ttl: float = 120.0, first_output: float = 30.0) -> StandinLab:
    """Build and start a stand-in lab in ``root`` (created): one board per entry of ``profiles``
    (hardware profile names), or that many ``qemu-x86_64`` boards."""
    from eden.image.build import build, default_cache
    from eden.image.layout import DISK_INTERFACE, TCG_CPU, Image
    from eden.profiles import load_profiles
    from eden.qemu.hostcheck import tcg_deadline_scale
    from eden.qemu.machine import port_host
    from eden.qemu.tamper import STAGES

    from eden.backends.qemu_eve import is_eve_profile

    root.mkdir(parents=True, exist_ok=True)
    wanted = ["qemu-x86_64"] * profiles if isinstance(profiles, int) else list(profiles)
    known = load_profiles()
    eve = {p for p in wanted if is_eve_profile(known[p])}
    image = Image.load(build(default_cache())) if set(wanted) - eve else None  # EVE boards boot their storage
    places = [f"{name}-{k}" for k in range(1, len(wanted) + 1)]
    profile_of = dict(zip(places, wanted))
    ports_of = {p: [nic.name for nic in known[profile_of[p]].nics] or ["eth0"] for p in places}
    boards = {p: root / "boards" / str(k) for k, p in enumerate(places, start=1)}
    lab = StandinLab(root, places, root / "lab.yaml", boards, free_port(), {p: free_port() for p in places},
                     {p: free_port() for p in places})
    try:
        for place, board in boards.items():
            if profile_of[place] in eve:  # UEFI firmware: it boots the EVE image the media driver wrote
                BoardHardware(name=place, firmware="ovmf", profile=profile_of[place], ports=ports_of[place],
                              memory_mb=EVE_BOARD_MEMORY_MB, serial=f"standin-{place}", ssh_port=lab.ssh_ports[place]).write(board)
                lab.procs.append(_start([sys.executable, "-m", "eden.lab.standin", "serve", str(board)], board / "daemon.log"))
                continue
            assert image is not None
            # The board's own firmware (a board boots what is flashed on it, not eden's image cache,
            # which a later build replaces): the reference image's kernel, initrd and layout.
            firmware = board / "firmware"
            firmware.mkdir(parents=True, exist_ok=True)
            for f in (image.kernel, image.initrd, image.dir / "image.json"):
                shutil.copy2(f, firmware / f.name)
            BoardHardware(name=place, kernel=str(firmware / image.kernel.name), initrd=str(firmware / image.initrd.name),
                          append=image.info["cmdline"], ports=ports_of[place], cpu=TCG_CPU, disk_interface=DISK_INTERFACE,
                          serial=f"standin-{place}", ssh_port=lab.ssh_ports[place], image_dir=str(firmware)).write(board)
            lab.procs.append(_start([sys.executable, "-m", "eden.lab.standin", "serve", str(board)], board / "daemon.log"))
        end = time.monotonic() + START_TIMEOUT
        for place, board in boards.items():
            while True:
                try:
                    command(board, "status", timeout=2.0)
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise InfrastructureError(f"stand-in board {place} did not start: {log_tail(board / 'daemon.log')}") from None
                    time.sleep(0.1)
        py = sys.executable
        (root / "pdudaemon.conf").write_text(pdudaemon_config(lab.pdu_port, name,
                                                              f"{py} -m eden.lab.standin power {root / 'boards'}/%s on",
                                                              f"{py} -m eden.lab.standin power {root / 'boards'}/%s off"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
        pdu = _start([pdudaemon_binary(), "--conf", str(root / "pdudaemon.conf"), "--loglevel", "INFO"], root / "pdudaemon.log", env)
        lab.procs.append(pdu)
        consoles = {place: Ser2netConnection(place, lab.console_ports[place], boards[place] / "tty", console)
                    for place in places}
        (root / "ser2net.yaml").write_text(ser2net_config(consoles.values()))
        ser = _start(ser2net_argv(ser2net_binary(), root / "ser2net.yaml", root / "ser2net.pid"), root / "ser2net.log")
        lab.procs.append(ser)
        wait_listening(lab.pdu_port, pdu, "PDUDaemon", root / "pdudaemon.log")
        for place in places:
            wait_listening(lab.console_ports[place], ser, "ser2net", root / "ser2net.log")
        scale = timing_scale if timing_scale is not None else tcg_deadline_scale()
        most = max(len(v) for v in ports_of.values())
        hosts = [port_host(i) for i in range(most)]
        lines = [
            "# A lab of stand-in boards: QEMU VMs wired like boards (eden/lab/standin_lab.py, docs/board.md).",
            f"lab: {name}",
            "controller:",
            "  listen: 127.0.0.1:0",
            f"  advertise: {hosts[0]}",
            "leases:",
            "  db: leases.sqlite",
            f"  ttl: {ttl:g}",
            "places:",
        ]
        for k, place in enumerate(places, start=1):
            board = boards[place]
            lines += [
                f"  {place}:",
                f"    profile: {profile_of[place]}",
                f"    serial: standin-{place}",  # its SMBIOS system serial (board.json)
                "    tags: [standin]",
                f"    timing_scale: {scale:g}",
                "    controller_hosts: {" + ", ".join(f"{p}: {hosts[i]}" for i, p in enumerate(ports_of[place])) + "}",
                "    power:",
                f"      pdudaemon: {{url: 'http://127.0.0.1:{lab.pdu_port}', hostname: {name}, port: {k}}}",
                "    console:",
                f"      network: {{url: '{consoles[place].url}'}}",
                "      reattach: 20",
                f"      first_output: {first_output:g}",
                f"    ssh: {{host: 127.0.0.1, port: {lab.ssh_ports[place]}, user: root}}",
                "    media:",
                f"      device: {board / 'disk.img'}",
                "    link:",
                "      command:",
                f"        down: {py} -m eden.lab.standin link {board} {{port}} down",
                f"        up: {py} -m eden.lab.standin link {board} {{port}} up",
            ]
            if profile_of[place] not in eve:  # tampering knows the reference image's layout only
                lines += ["    tamper:", *(f"      {stage}: {py} -m eden.lab.standin tamper {board} {stage}" for stage in STAGES)]
        lab.lab_file.write_text("\n".join(lines) + "\n")
    except BaseException:
        lab.close()
        raise
    return lab
