"""One software TPM 2.0 (swtpm) per VM.

The TPM state directory is the VM's "TPM chip": it survives power cycles (like a real chip) and is
initialised once with ``swtpm_setup --create-ek-cert`` (without it QEMU fails at CMD_INIT). The swtpm
process itself is started for each power-on and ends with QEMU (``--terminate``); its control socket
lives outside the state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path

from eden.runtime.procs import Managed, ProcessGroup
from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError

#: swtpm writes this file into an initialised TPM 2.0 state directory.
STATE_FILE = "tpm2-00.permall"


class Swtpm:
    """The TPM of one VM: ``state_dir`` persists, ``sock`` is the control socket QEMU connects to."""

    def __init__(self, state_dir: Path, sock: Path, *, swtpm: str = "swtpm", swtpm_setup: str = "swtpm_setup") -> None:
        if sock.resolve().is_relative_to(state_dir.resolve()):
            raise ValueError("the swtpm control socket must live outside the TPM state directory")
        self.state_dir = state_dir
        self.sock = sock
        self.swtpm = swtpm
        self.swtpm_setup = swtpm_setup
        self.proc: Managed | None = None

    @property
    def initialised(self) -> bool:
        return (self.state_dir / STATE_FILE).is_file()

    async def setup(self, group: ProcessGroup, deadline: Deadline, env: dict[str, str] | None = None) -> None:
        """Create the TPM (EK and its certificate) unless the state dir already holds one."""
        if self.initialised:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [self.swtpm_setup, "--tpm2", "--tpmstate", str(self.state_dir), "--create-ek-cert",
                "--overwrite"]
        # swtpm_setup keeps a pid file in $TMPDIR: keep it in the run so a killed setup leaks nothing
        tmp = self.state_dir.parent / ".swtpm_setup.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            await self._run_setup(group, argv, {**(env or {}), "TMPDIR": str(tmp)}, deadline)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def _run_setup(self, group: ProcessGroup, argv: list[str], env: dict[str, str], deadline: Deadline) -> None:
        proc = await group.start("swtpm_setup", argv, env=env)
        try:
            rc = await proc.wait(max(0.01, deadline.remaining()))
        except BaseException as exc:
            # swtpm_setup runs its own swtpm child: kill its whole process group (its own session)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.stop(grace=0.5)
            if isinstance(exc, asyncio.TimeoutError):
                raise InfrastructureError(
                    f"swtpm_setup did not finish in time\n{group.log_tail('swtpm_setup')}"
                ) from None
            raise
        if rc != 0 or not self.initialised:
            raise InfrastructureError(f"swtpm_setup failed (exit {rc})\n{group.log_tail('swtpm_setup')}")

    async def start(self, group: ProcessGroup, deadline: Deadline, env: dict[str, str] | None = None) -> None:
        """Start swtpm and wait until its control socket accepts connections."""
        await self.setup(group, deadline, env)
        self.sock.parent.mkdir(parents=True, exist_ok=True)
        self.sock.unlink(missing_ok=True)
        argv = [self.swtpm, "socket", "--tpm2", "--tpmstate", f"dir={self.state_dir}",
                "--ctrl", f"type=unixio,path={self.sock}", "--terminate"]
        self.proc = await group.start("swtpm", argv, env=env)
        while not self.sock.exists():
            if not self.proc.running:
                raise InfrastructureError(f"swtpm exited at start\n{group.log_tail('swtpm')}")
            if deadline.expired():
                raise InfrastructureError(f"swtpm control socket {self.sock} did not appear in time")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.proc is not None:
            await self.proc.stop(grace=2.0)
            self.proc = None
        self.sock.unlink(missing_ok=True)

    def qemu_args(self) -> list[str]:
        """The QEMU options that attach this TPM as a TIS device (``/dev/tpm0`` in the guest)."""
        return [
            "-chardev", f"socket,id=chrtpm,path={self.sock}",
            "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
            "-device", "tpm-tis,tpmdev=tpm0",
        ]
