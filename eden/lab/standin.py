"""A stand-in board: a QEMU VM wired like a physical board, so the board backend is tested here.

No physical board exists on the machines eden is tested on. The closest real thing is a VM booting
eden's reference image that the board backend can reach *only* the way it reaches a board: power
through a PDU (a real PDUDaemon whose ``localcmdline`` driver runs this module's ``power``
command), the console through a serial adapter (a pty) served over TCP by a real ser2net, the
storage through a media device (a disk image file the media driver writes while the board is off),
the network ports through a link command (a managed switch port). The backend never talks QMP to
it and never sees its process. Everything that says "stand-in" in docs and reports means this.

Per board, a directory (``board.json`` describes the hardware):

* ``tty`` -- the serial adapter: a symlink to a pty that exists whether the board is powered or not,
  as a USB serial adapter's ``/dev/serial/by-id`` link does. ``replug`` re-enumerates it (a new pty,
  the link re-pointed), ``unplug`` removes it (a cable pulled out), ``plug`` brings it back;
* ``disk.img`` -- the board's storage;
* ``tamper DIR STAGE`` -- what a lab with a flash programmer or the board's storage in hand does
  to a powered-off board (:mod:`eden.qemu.tamper`): a changed firmware ROM, kernel command line,
  rootfs block or CONFIG file, kept in ``board.json`` / ``disk.img`` for every later boot;
* ``dead`` / ``alive`` -- a board that no longer boots (its power input takes the switch and
  nothing happens, as with a dead supply), and one repaired;
* ``vm/`` -- the VM's run directory (its swtpm state is the board's TPM and survives power cuts);
* ``standin.log`` -- what the board daemon did.

A board is a long-lived daemon (``python -m eden.lab.standin serve DIR``), the board's hardware; the
commands (``power DIR on|off``, ``link DIR PORT up|down``, ``replug``, ``unplug``, ``plug``,
``status``, ``quit``) reach it over an abstract unix socket named after the directory, so no socket
file is left behind and no path length limit applies. ``on`` is a power switch closing: the VM
starts; ``off`` is a power cut (QEMU killed). A board without a ``disk.img`` does not boot: the
``on`` command fails, and since PDUDaemon answers before it acts, the backend learns it only by
watching the console, as with a real board.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import sys
import termios
import tty
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    from eden.qemu.machine import Machine, MachineConfig

Answer = dict[str, object]
"""A daemon's answer to one command (JSON): ``ok`` and what else the command tells."""

CONTROL_TIMEOUT = 90.0
"""Seconds a command waits for the daemon's answer (``on`` starts swtpm and QEMU)."""
COMMANDS = ("on", "off", "link", "tamper", "replug", "unplug", "plug", "dead", "alive", "status", "quit")


@dataclass
class BoardHardware:
    """``board.json``: what the stand-in board is. Its firmware is the reference image's kernel
    (``firmware: kernel``), or for an EVE board UEFI (``ovmf``: OVMF and swtpm booting whatever
    its storage holds, as EVE's live image needs; the machine is its ``profile``'s)."""

    name: str
    kernel: str = ""
    initrd: str = ""
    append: str = ""
    firmware: str = "kernel"
    profile: str = ""
    ports: list[str] = field(default_factory=lambda: ["eth0"])
    memory_mb: int = 512
    accel: str = "tcg"
    cpu: str | None = None
    serial: str = ""
    disk_interface: str = "virtio"
    ssh_port: int = 0
    """The host port of the board's SSH (its first port's network); 0: any (then not in a lab file)."""
    image_dir: str = ""
    """The reference image the board's storage holds (what ``tamper`` needs to find its partitions)."""
    extra_args: list[str] = field(default_factory=list)
    """QEMU arguments beyond the machine's own: where a firmware tamper points the board at a changed ROM."""

    @classmethod
    def read(cls, board: Path) -> BoardHardware:
        return cls(**json.loads((board / "board.json").read_text()))

    def write(self, board: Path) -> None:
        board.mkdir(parents=True, exist_ok=True)
        (board / "board.json").write_text(json.dumps(asdict(self), indent=2) + "\n")


def control_address(board: Path) -> str:
    """The abstract unix socket of a board's daemon (a leading NUL: nothing on disk)."""
    digest = hashlib.sha256(str(board.resolve()).encode()).hexdigest()[:24]
    return f"\0eden-standin-{digest}"


# ------------------------------------------------------------------------------------- client --
def command(board: Path, *words: str, timeout: float = CONTROL_TIMEOUT) -> Answer:
    """Send one command to a board's daemon and return its answer (``{"ok": bool, ...}``).

    Raises ``OSError`` when no daemon serves the board (the board is not there at all)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(control_address(board))
        s.sendall((" ".join(words) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: Answer = json.loads(data or b'{"ok": false, "error": "no answer"}')
    return answer


# ------------------------------------------------------------------------------------- daemon --
class _SerialAdapter:
    """The board's USB serial adapter: a pty whose slave end is reached through ``<board>/tty``.

    The daemon keeps the slave open itself, so the adapter exists while nobody has it open (as a
    real adapter does) and bytes the board sends while nobody listens are dropped, not blocked on."""

    def __init__(self, link: Path, on_input: Callable[[bytes], None]) -> None:
        self.link = link
        self.on_input = on_input
        self.master: int | None = None
        self.slave: int | None = None
        self.generation = 0
        self.tx_bytes = 0  # what the board's UART got onto the line (a test waits for a boot's output)

    def plug(self, *, replace: bool = False) -> None:
        """Attach the adapter; ``replace``: a re-enumeration (the new device is there before the
        old one is gone, so it gets another name, as a re-plugged USB adapter does)."""
        if self.master is not None and not replace:
            return
        old = (self.master, self.slave)
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        self.generation += 1
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)  # atomic: a reader sees the old pty or the new one, never none
        loop = asyncio.get_running_loop()
        if old[0] is not None:
            loop.remove_reader(old[0])
            for fd in old:
                with contextlib.suppress(OSError):
                    os.close(fd)  # type: ignore[arg-type]
        loop.add_reader(master, self._readable)

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        if self.master is not None:
            asyncio.get_running_loop().remove_reader(self.master)
            for fd in (self.master, self.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)  # type: ignore[arg-type]
        self.master = self.slave = None

    def _readable(self) -> None:
        assert self.master is not None
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if data:
            self.on_input(data)

    def send(self, data: bytes) -> None:
        """The board's UART transmits; with no room in the line (nobody reading) bytes are lost."""
        if self.master is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            self.tx_bytes += os.write(self.master, data)


class _Board:
    def __init__(self, board: Path) -> None:
        self.dir = board
        self.hw = BoardHardware.read(board)
        self.adapter = _SerialAdapter(board / "tty", self._keyboard)
        self.machine: Machine | None = None
        self.links_down: set[str] = set()
        self.dead = False
        self.boots = 0
        self.stop = asyncio.Event()
        self._log = open(board / "standin.log", "a", buffering=1)

    def log(self, text: str) -> None:
        import time

        self._log.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def _keyboard(self, data: bytes) -> None:
        m = self.machine
        if m is not None and m.running and m.console is not None and not m.console.closed:
            asyncio.get_running_loop().create_task(self._type(data))

    async def _type(self, data: bytes) -> None:
        m = self.machine
        if m is not None and m.console is not None:
            with contextlib.suppress(Exception):
                await m.console.write(data)

    def _machine(self) -> Machine:
        from eden.qemu.machine import Disk, Machine, MachineConfig, port_nics

        hw = self.hw
        disk = self.dir / "disk.img"
        if hw.firmware == "ovmf":
            return Machine(self._uefi_config(disk), self.dir / "vm", on_console_bytes=self.adapter.send)
        extra = ["-smbios", f"type=1,serial={hw.serial or hw.name}", *hw.extra_args]
        if hw.cpu:
            extra = ["-cpu", hw.cpu, *extra]
        cfg = MachineConfig(
            name=hw.name, kernel=Path(hw.kernel), initrd=Path(hw.initrd), append=hw.append,
            disks=[Disk(disk, "raw", hw.disk_interface, cache="unsafe")],  # type: ignore[arg-type]
            memory_mb=hw.memory_mb, accel=hw.accel, tpm=True, tpm_state=self.dir / "tpm",  # type: ignore[arg-type]
            nics=port_nics(list(hw.ports), hw.name), extra_args=extra,
            hostfwd_host={"ssh": hw.ssh_port} if hw.ssh_port else {},
        )
        return Machine(cfg, self.dir / "vm", on_console_bytes=self.adapter.send)

    def _uefi_config(self, disk: Path) -> MachineConfig:
        """An EVE board: the profile's machine with OVMF and swtpm (eden.qemu.eve_image), its NICs
        and SSH as the kernel-booted board has them."""
        from eden.profiles import load_profiles
        from eden.qemu.eve_image import eve_machine_config
        from eden.qemu.machine import port_nics

        hw = self.hw
        accel: Literal["kvm", "tcg"] = "kvm" if hw.accel == "kvm" else "tcg"
        cfg = eve_machine_config(load_profiles()[hw.profile], disk, name=hw.name, serial=hw.serial or hw.name,
                                 tpm_state=self.dir / "tpm", accel=accel, memory_mb=hw.memory_mb)
        cfg.nics = port_nics(list(hw.ports), hw.name)
        cfg.extra_args = [*cfg.extra_args, *hw.extra_args]
        cfg.hostfwd_host = {"ssh": hw.ssh_port} if hw.ssh_port else {}
        return cfg

    async def handle(self, words: list[str]) -> Answer:
        from eden.runtime.deadline import Deadline

        what = words[0] if words else ""
        if what == "status":
            powered = self.machine is not None and self.machine.running
            tty_target = os.readlink(self.dir / "tty") if (self.dir / "tty").is_symlink() else None
            return {"ok": True, "powered": powered, "boots": self.boots, "tty": tty_target, "dead": self.dead,
                    "adapter_generation": self.adapter.generation, "tx_bytes": self.adapter.tx_bytes, "links_down": sorted(self.links_down)}
        if what in ("dead", "alive"):
            self.dead = what == "dead"
            return {"ok": True}
        if what == "on":
            if self.dead:
                return {"ok": True, "dead": True}  # the switch closes; nothing lights up
            if self.machine is not None and self.machine.running:
                return {"ok": True, "already": True}
            if not (self.dir / "disk.img").is_file():
                return {"ok": False, "error": "no disk.img: nothing to boot"}
            if self.machine is not None:
                await self.machine.close()
            self.machine = self._machine()
            self.machine.links_down = {self.machine.nic_id(p) for p in self.links_down}
            await self.machine.power_on(Deadline(CONTROL_TIMEOUT - 5))
            self.boots += 1
            return {"ok": True, "pid": self.machine.pid}
        if what == "off":
            if self.machine is not None:
                await self.machine.pull_plug()
            return {"ok": True}
        if what == "link" and len(words) == 3 and words[2] in ("up", "down"):
            port, up = words[1], words[2] == "up"
            if port not in self.hw.ports:
                return {"ok": False, "error": f"no port {port} (ports: {', '.join(self.hw.ports)})"}
            (self.links_down.discard if up else self.links_down.add)(port)
            if self.machine is not None and self.machine.running:
                await self.machine.set_link(up, Deadline(10.0), nic=port)
            return {"ok": True}
        if what == "tamper" and len(words) == 2:
            return await self._tamper(words[1])
        if what == "replug":
            self.adapter.plug(replace=True)
            return {"ok": True, "tty": os.readlink(self.dir / "tty")}
        if what == "unplug":
            self.adapter.unplug()
            return {"ok": True}
        if what == "plug":
            self.adapter.plug()
            return {"ok": True}
        if what == "quit":
            self.stop.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {' '.join(words)!r} (commands: {', '.join(COMMANDS)})"}

    async def _tamper(self, stage: str) -> Answer:
        from eden.image.layout import Image
        from eden.qemu.tamper import TamperTarget, apply_tamper

        if self.machine is not None and self.machine.running:
            return {"ok": False, "error": "the board is powered: tamper needs it off"}
        if not self.hw.image_dir or not (self.dir / "disk.img").is_file():
            return {"ok": False, "error": "no image on the board's storage to tamper with"}
        image = Image.load(Path(self.hw.image_dir))
        res = await asyncio.to_thread(apply_tamper, stage, TamperTarget(
            image=image, disk=self.dir / "disk.img", directory=self.dir, append=self.hw.append,
            extra_args=tuple(self.hw.extra_args)))
        self.hw.append, self.hw.extra_args = res.append, list(res.extra_args)
        self.hw.write(self.dir)  # a reflashed firmware stays reflashed
        return {"ok": True, "stage": stage, "pcrs": list(res.pcrs), "detail": res.detail}

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode(errors="replace").split()
            self.log(f"command: {' '.join(line)}")
            try:
                answer = await self.handle(line)
            except Exception as exc:  # noqa: BLE001 - the answer says why; the board stays up
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.log(f"answer: {answer}")
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
        finally:
            writer.close()

    async def run(self) -> None:
        self.adapter.plug()
        server = await asyncio.start_unix_server(self.serve_client, path=control_address(self.dir))
        self.log(f"board {self.hw.name} ready: tty -> {os.readlink(self.dir / 'tty')}")
        try:
            await self.stop.wait()
        finally:
            server.close()
            if self.machine is not None:
                await self.machine.close()
            self.adapter.unplug()
            self.log("board daemon stopped")
            self._log.close()


def serve(board: Path) -> None:
    """Run a board's daemon until ``quit`` or SIGTERM (the VM is powered off on the way out)."""
    import signal

    async def main() -> None:
        b = _Board(board)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, b.stop.set)
        await b.run()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    """``python -m eden.lab.standin serve|power|link|replug|unplug|plug|status|quit DIR ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: python -m eden.lab.standin serve DIR | power DIR on|off | link DIR PORT up|down | tamper DIR STAGE"
             " | replug|unplug|plug|dead|alive|status|quit DIR")
    if len(args) < 2:
        print(usage, file=sys.stderr)
        return 2
    verb, board = args[0], Path(args[1])
    if verb == "serve":
        serve(board)
        return 0
    words = args[2:] if verb == "power" else [verb, *args[2:]]
    if verb == "power" and words not in (["on"], ["off"]):
        print(usage, file=sys.stderr)
        return 2
    try:
        answer = command(board, *words)
    except OSError as exc:
        print(f"stand-in board {board}: not reachable ({exc})", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
