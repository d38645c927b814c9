"""Real QEMU (TCG) booting a tiny guest: power, QMP events, console, TPM, SSH, failures, leaks.

The guest is Debian's cloud kernel (fetched once into ~/.cache/eden, see eden.qemu.miniguest) with a
busybox initramfs built here whose /init prints EDEN-* markers, reports /dev/tpm0, watches the NIC's
carrier, runs dropbear, and reboots on command.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from leakcheck import marked_processes

from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError
from eden.qemu import hostcheck
from eden.runtime.console import ExpectTimeout
from eden.qemu.machine import Machine, MachineConfig, MachineEvent
from eden.qemu.miniguest import build_initramfs, fetch_cloud_kernel
from eden.runtime.ssh import Ssh, SshKey

pytestmark = [pytest.mark.slow, pytest.mark.qemu]

BOOT = 40.0  # generous: two guests may boot at once on 2 shared cores under TCG
MARK = "EDEN_QEMU_TEST_MARK"


class Guest:
    def __init__(self, kernel: Path, initrd: Path, key: SshKey) -> None:
        self.kernel = kernel
        self.initrd = initrd
        self.key = key

    def config(self, **kw: object) -> MachineConfig:
        base: dict[str, object] = dict(kernel=self.kernel, initrd=self.initrd, accel="tcg",
                                       append="console=ttyS0 quiet panic=-1")
        base.update(kw)
        return MachineConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Guest:
    kdir = fetch_cloud_kernel()
    work = tmp_path_factory.mktemp("guest")
    key = SshKey.generate(work / "key")
    initrd = build_initramfs(work / "initrd.cpio", kdir, authorized_key=key.public_line)
    return Guest(kdir / "vmlinuz", initrd, key)


def _marked_pids(mark: str) -> list[int]:
    return sorted(marked_processes(MARK, mark))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


@pytest.fixture
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Every child inherits a unique mark; after the test none is alive, no port listens, no temp dir.

    Temp files and socket directories go to a directory of this test's own (TMPDIR, EDEN_SOCK_DIR),
    so that VMs of other runs on the host (a background suite) are not counted."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    own_tmp = Path(f"/tmp/eqm-{mark[:8]}")
    own_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(own_tmp))
    monkeypatch.setenv("EDEN_SOCK_DIR", str(own_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    ports: dict[str, int] = {}
    try:
        yield ports
        leaked = {pid: _cmdline(pid) for pid in _marked_pids(mark)}
        assert leaked == {}, "leaked qemu/swtpm processes"
        for name, port in ports.items():
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert sorted(os.listdir(own_tmp)) == [], "temp files or socket directories left behind"
    finally:
        shutil.rmtree(own_tmp, ignore_errors=True)


def test_boot_tpm_events_reset_link_reboot_ssh_quit(guest: Guest, tmp_path: Path, no_leaks: dict[str, int]) -> None:
    events: list[MachineEvent] = []
    lines: list[str] = []

    async def main() -> None:
        async with Machine(guest.config(), tmp_path / "run", on_event=events.append, on_console_line=lines.append) as vm:
            await vm.power_on(Deadline(BOOT))
            no_leaks["ssh"] = vm.ssh_port
            assert vm.console is not None
            boot = await vm.console.expect("EDEN-BOOT", Deadline(BOOT))
            tpm = await vm.console.expect(re.compile(r"EDEN-TPM (\w+)\r?\n"), Deadline(5))
            assert tpm.group(1) == "present", "swtpm must show up as /dev/tpm0"
            await vm.console.expect("EDEN-LINK 1", Deadline(10))
            await vm.console.expect("EDEN-READY", Deadline(BOOT))
            assert boot.at <= tpm.at

            # network fault: the guest sees its carrier go and come back
            await vm.set_link(False, Deadline(5))
            await vm.console.expect("EDEN-LINK 0", Deadline(10))
            await vm.set_link(True, Deadline(5))
            await vm.console.expect("EDEN-LINK 1", Deadline(10))

            # SSH end to end through the host forward (dropbear in the guest)
            ssh = Ssh(vm.ssh_port, guest.key)
            await ssh.connect(Deadline(BOOT))
            rc, out, err = await ssh.run("cat /proc/uptime; ls /dev/tpm0; echo oops >&2; exit 7", Deadline(15))
            assert (rc, out.splitlines()[-1], err) == (7, "/dev/tpm0", "oops\n")
            blob = bytes(range(256)) * 64
            (tmp_path / "blob").write_bytes(blob)
            await ssh.put(tmp_path / "blob", "/tmp/blob", Deadline(15))
            assert await ssh.get("/tmp/blob", Deadline(15)) == blob
            await ssh.close()

            # the reset button: a RESET event and a second boot
            n = len(events)
            await vm.reset(Deadline(5))
            await vm.console.expect("EDEN-BOOT", Deadline(BOOT))
            assert any(e.name == "RESET" and e.data.get("guest") is False for e in events[n:])

            # a reboot from inside the guest is a real reset too (no -no-reboot)
            await vm.console.expect("EDEN-READY", Deadline(BOOT))
            n = len(events)
            await vm.console.write("reboot\n")
            await vm.console.expect("EDEN-REBOOTING", Deadline(10))
            await vm.console.expect("EDEN-BOOT", Deadline(BOOT))
            assert any(e.name == "RESET" and e.data.get("guest") is True for e in events[n:])

            # a kernel panic: pvpanic reports it, the guest's own panic=-1 reboots it
            await vm.console.expect("EDEN-READY", Deadline(BOOT))
            n = len(events)
            await vm.console.write("panic\n")
            await vm.console.expect("EDEN-BOOT", Deadline(BOOT))
            assert "GUEST_PANICKED" in [e.name for e in events[n:]]

            # a command QEMU refuses is an error, but the machine is still fine
            with pytest.raises(InfrastructureError, match="refused"):
                await vm.set_link(False, Deadline(5), nic="no-such-nic")

            # pause / continue
            await vm.pause(Deadline(5))
            await vm.cont(Deadline(5))
            await vm.power_off(Deadline(10))
            assert not vm.running

    asyncio.run(main())
    names = [e.name for e in events]
    assert names[0] == "RESUME"
    assert {"STOP", "RESUME", "RESET", "SHUTDOWN"} <= set(names)
    assert names[-1] == "QEMU_EXITED" and events[-1].data["expected"] is True
    assert "EDEN-READY" in lines
    raw = (tmp_path / "run" / "console.raw").read_bytes()
    assert raw.count(b"EDEN-BOOT") == 4
    assert not list((tmp_path / "run" / "s").glob("*.sock"))


def test_qemu_killed_from_outside_is_an_infrastructure_error(guest: Guest, tmp_path: Path, no_leaks: dict[str, int]) -> None:
    async def main() -> None:
        async with Machine(guest.config(), tmp_path / "run") as vm:
            await vm.power_on(Deadline(BOOT))
            no_leaks["ssh"] = vm.ssh_port
            assert vm.console is not None and vm.pid is not None
            await vm.console.expect("EDEN-BOOT", Deadline(BOOT))
            os.kill(vm.pid, signal.SIGKILL)
            with pytest.raises(InfrastructureError, match="console lost"):
                await vm.console.expect("never printed", Deadline(BOOT))
            await vm.wait_exit(Deadline(10))
            with pytest.raises(InfrastructureError, match="exited unexpectedly"):
                await vm.reset(Deadline(5))
            assert vm.events[-1].name == "QEMU_EXITED" and vm.events[-1].data["expected"] is False

    asyncio.run(main())


def test_hung_qemu_is_an_infrastructure_error(guest: Guest, tmp_path: Path, no_leaks: dict[str, int]) -> None:
    async def main() -> None:
        async with Machine(guest.config(), tmp_path / "run") as vm:
            await vm.power_on(Deadline(BOOT))
            assert vm.pid is not None
            os.kill(vm.pid, signal.SIGSTOP)  # alive but answers nothing
            with pytest.raises(InfrastructureError, match="did not answer QMP"):
                await vm.set_link(False, Deadline(1.0))
            with pytest.raises(InfrastructureError):  # stays failed
                await vm.cont(Deadline(1.0))

    asyncio.run(main())


def test_qemu_that_refuses_to_start_says_why(guest: Guest, tmp_path: Path, no_leaks: dict[str, int]) -> None:
    async def main() -> None:
        async with Machine(guest.config(extra_args=["-device", "no-such-device"]), tmp_path / "run") as vm:
            with pytest.raises(InfrastructureError, match="exited at start(.|\n)*no-such-device"):
                await vm.power_on(Deadline(BOOT))
            assert not vm.running

    asyncio.run(main())


def test_marker_that_never_comes_times_out_and_cleans_up(guest: Guest, tmp_path: Path, no_leaks: dict[str, int]) -> None:
    async def main() -> None:
        vm = Machine(guest.config(), tmp_path / "run")
        try:
            await vm.power_on(Deadline(BOOT))
            assert vm.console is not None
            with pytest.raises(ExpectTimeout):
                await vm.console.expect("EDEN-NEVER", Deadline(2.0))
            assert vm.running  # a timeout is about the guest; the machine is fine
        finally:
            await vm.close()

    asyncio.run(main())


def test_cancelled_run_leaves_nothing(guest: Guest, tmp_path: Path, no_leaks: dict[str, int]) -> None:
    """Ctrl-C (task cancellation) during power-on and during boot: everything is torn down."""

    async def run(vm: Machine) -> None:
        try:
            await vm.power_on(Deadline(BOOT))
            assert vm.console is not None
            await vm.console.expect("EDEN-NEVER", Deadline(BOOT))
        finally:
            await vm.close()

    async def main() -> None:
        for delay in (0.05, 1.0):  # inside power_on (swtpm/QEMU starting), then while the guest boots
            vm = Machine(guest.config(), tmp_path / f"run{delay}")
            task = asyncio.get_running_loop().create_task(run(vm))
            await asyncio.sleep(delay)  # the point in the run where the user hits Ctrl-C
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not vm.running

    asyncio.run(main())


def test_guest_poweroff_is_not_a_failure_and_parallel_runs_do_not_collide(
    guest: Guest, tmp_path: Path, no_leaks: dict[str, int]
) -> None:
    long_dir = tmp_path / ("x" * 90)  # socket paths too long for sun_path go to a private /tmp dir

    async def main() -> None:
        a = Machine(guest.config(name="a"), tmp_path / "a")
        b = Machine(guest.config(name="b", tpm=False), long_dir / "b")
        try:
            await asyncio.gather(a.power_on(Deadline(BOOT)), b.power_on(Deadline(BOOT)))
            no_leaks["a"], no_leaks["b"] = a.ssh_port, b.ssh_port
            assert a.ssh_port != b.ssh_port
            assert a.console is not None and b.console is not None
            await asyncio.gather(a.console.expect("EDEN-READY", Deadline(BOOT)),
                                 b.console.expect("EDEN-READY", Deadline(BOOT)))
            assert b"EDEN-TPM absent" in (long_dir / "b" / "console.raw").read_bytes()
            await a.console.write("poweroff\n")
            assert await a.wait_exit(Deadline(20)) == 0
            assert any(e.name == "SHUTDOWN" and e.data.get("guest") for e in a.events)
            assert a.events[-1].data == {"rc": 0, "expected": True}
            await b.reset(Deadline(5))  # the other one is untouched
        finally:
            await asyncio.gather(a.close(), b.close())

    asyncio.run(main())


def test_ovmf_boot_and_power_cut_keep_tpm_and_nvram(guest: Guest, tmp_path: Path, no_leaks: dict[str, int]) -> None:
    """UEFI firmware (OVMF) boots the guest; a power cut and power-on boots it again with the same TPM."""

    async def main() -> None:
        async with Machine(guest.config(ovmf=True), tmp_path / "run") as vm:
            await vm.power_on(Deadline(BOOT))
            assert vm.console is not None
            await vm.console.expect("EDEN-TPM present", Deadline(60))
            setup_log = tmp_path / "run" / "logs" / "swtpm_setup.log"
            assert setup_log.exists()
            setup_log.unlink()  # recreated if swtpm_setup ran again
            await vm.pull_plug()
            assert not vm.running
            await vm.power_on(Deadline(BOOT))
            await vm.console.expect("EDEN-TPM present", Deadline(60))
            assert vm.boots == 2
            # the same TPM chip: its state dir was kept, swtpm_setup did not run again
            assert not setup_log.exists()
        cmdline = (tmp_path / "run" / "qemu.cmdline").read_text()
        assert "if=pflash" in cmdline and str(tmp_path / "run" / "OVMF_VARS.fd") in cmdline

    asyncio.run(main())


def test_kvm_probe_decides_once_per_process(guest: Guest, monkeypatch: pytest.MonkeyPatch, no_leaks: dict[str, int]) -> None:
    monkeypatch.delenv(hostcheck.ACCEL_ENV, raising=False)
    hostcheck.forget_probe()

    async def main() -> tuple[str, str, bool]:
        first = await hostcheck.probe_accel(guest.kernel, deadline=Deadline(3.0))
        again = await hostcheck.probe_accel(guest.kernel, deadline=Deadline(0.001))  # cached: no time needed
        tcg_boots = await hostcheck.boots_with("qemu-system-x86_64", "tcg", guest.kernel, Deadline(20))
        return first, again, tcg_boots

    first, again, tcg_boots = asyncio.run(main())
    assert first in ("kvm", "tcg") and again == first
    assert tcg_boots, "the probe's kernel must get through early boot under TCG"
    if not hostcheck.kvm_device_usable():
        assert first == "tcg"
    monkeypatch.setenv(hostcheck.ACCEL_ENV, "tcg")
    assert asyncio.run(hostcheck.probe_accel(guest.kernel)) == "tcg"
    monkeypatch.setenv(hostcheck.ACCEL_ENV, "fast")
    with pytest.raises(InfrastructureError):
        asyncio.run(hostcheck.probe_accel(guest.kernel))
