"""Pre-flight checks for the QEMU backend, and the KVM probe.

Every missing host tool gets its own line in one :class:`~eden.errors.InfrastructureError`, so a
user fixes all of them in one go (``scripts/install-system-deps`` installs them on Debian).

``/dev/kvm`` being present does not mean KVM works: on some hosts QEMU with ``-accel kvm`` spins in
the kernel and prints nothing (see the host notes). :func:`probe_accel` therefore boots a 16-byte
guest that writes one byte to the serial port and accepts KVM only if that byte arrives before a
short deadline; otherwise it settles on TCG. The answer is cached per process and QEMU binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eden.runtime.procs import ProcessGroup
from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError

Accel = Literal["kvm", "tcg"]

INSTALL_HINT = "install the QEMU host packages with scripts/install-system-deps (as root on Debian)"

#: Where Debian/Ubuntu/Fedora put the OVMF firmware code, best first.
OVMF_CANDIDATES: tuple[Path, ...] = (
    Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
    Path("/usr/share/OVMF/OVMF_CODE.fd"),
    Path("/usr/share/ovmf/OVMF.fd"),
    Path("/usr/share/qemu/OVMF.fd"),
    Path("/usr/share/edk2/ovmf/OVMF_CODE.fd"),
)

#: Set to "tcg" or "kvm" to skip the probe (for example on a host known to be one or the other).
ACCEL_ENV = "EDEN_QEMU_ACCEL"

#: The factor applied to a scenario's ``within`` deadlines when the VMs run under TCG (see
#: :func:`tcg_deadline_scale`); ``1`` keeps the scenario's own deadlines.
TCG_SCALE_ENV = "EDEN_QEMU_TCG_SCALE"
TCG_SCALE_DEFAULT = 2.0
TCG_SCALE_MAX = 10.0


@dataclass(frozen=True)
class HostTools:
    """Absolute paths of the host tools a VM needs (``None`` when not asked for)."""

    qemu: str
    swtpm: str | None = None
    swtpm_setup: str | None = None
    ovmf: Path | None = None
    kernel: Path | None = None


def _which(name: str) -> str | None:
    # swtpm and friends live in /usr/bin, but some distributions put tools in sbin
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def find_ovmf() -> Path | None:
    """The first OVMF firmware image found on this host, if any."""
    return next((p for p in OVMF_CANDIDATES if p.is_file()), None)


def check_host(
    *,
    qemu: str = "qemu-system-x86_64",
    tpm: bool = True,
    ovmf: bool | Path = False,
    kernel: Path | None = None,
    initrd: Path | None = None,
) -> HostTools:
    """Check the host has what a VM needs; one clear line per missing item.

    ``ovmf=True`` looks for the firmware in the usual places, a path checks that file.
    ``kernel``/``initrd`` are checked when given (direct kernel boot).
    """
    problems: list[str] = []
    qemu_path = _which(qemu)
    if qemu_path is None:
        problems.append(f"{qemu} not found on PATH (Debian package qemu-system-x86)")
    swtpm = setup = None
    if tpm:
        swtpm = _which("swtpm")
        setup = _which("swtpm_setup")
        if swtpm is None:
            problems.append("swtpm not found on PATH (Debian package swtpm)")
        if setup is None:
            problems.append("swtpm_setup not found on PATH (Debian package swtpm-tools)")
    ovmf_path: Path | None = None
    if ovmf is True:
        ovmf_path = find_ovmf()
        if ovmf_path is None:
            looked = ", ".join(str(p) for p in OVMF_CANDIDATES)
            problems.append(f"OVMF firmware not found (looked for {looked}; Debian package ovmf)")
    elif isinstance(ovmf, Path):
        ovmf_path = ovmf
        if not ovmf.is_file():
            problems.append(f"OVMF firmware file {ovmf} does not exist")
    for what, path in (("kernel image", kernel), ("initrd", initrd)):
        if path is not None and not Path(path).is_file():
            problems.append(f"{what} {path} does not exist")
    if problems:
        raise InfrastructureError(
            "the host is missing what the QEMU backend needs:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\n  hint: {INSTALL_HINT}"
        )
    assert qemu_path is not None
    return HostTools(qemu_path, swtpm, setup, ovmf_path, Path(kernel) if kernel else None)


# --- the KVM probe ---------------------------------------------------------------------------------

#: What the probe waits for: the kernel got through its whole early boot (then it panics and exits
#: because the probe gives it no root file system).
PROBE_MARKER = "Kernel panic"

_accel_cache: dict[tuple[str, str], Accel] = {}
_accel_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def kvm_device_usable() -> bool:
    """``/dev/kvm`` exists and we may open it (necessary, not sufficient)."""
    return os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)


async def boots_with(qemu: str, accel: Accel, kernel: Path, deadline: Deadline) -> bool:
    """Does ``kernel`` get through its early boot under ``accel`` before ``deadline``?

    A guest that runs real-mode code but hangs later is the failure seen on hosts where
    ``/dev/kvm`` exists but KVM does not work, so the probe must run a real kernel, not a stub.
    """
    with tempfile.TemporaryDirectory(prefix="eden-kvmprobe-") as tmp:
        group = ProcessGroup(Path(tmp))
        reached = asyncio.Event()

        def on_line(line: str) -> None:
            if PROBE_MARKER in line:
                reached.set()

        try:
            argv = [qemu, "-accel", accel, "-nodefaults", "-display", "none", "-monitor", "none",
                    "-m", "128", "-serial", "stdio", "-no-reboot", "-kernel", str(kernel),
                    "-append", "console=ttyS0 panic=-1 quiet"]
            await group.start("probe", argv, on_line=on_line)
            try:
                await asyncio.wait_for(reached.wait(), max(0.01, deadline.remaining()))
            except asyncio.TimeoutError:
                return False
            return True
        finally:
            await group.close()


def tcg_deadline_scale() -> float:
    """How much longer a ``within`` deadline is when the guests run under TCG (default 2).

    A scenario's deadlines describe a device on its own hardware. Under TCG every guest instruction
    is translated, so a VM boots and starts its agent several times slower than the machine it
    stands for, more so with several VMs sharing the host's cores: on a two-core host running the
    qemu suite's nine VMs and nothing else, power-on to an attested device took 238-292 s of the
    scenarios' 300 s (docs/qemu.md).
    The same practice as LTP's ``LTP_TIMEOUT_MUL`` and Zephyr twister's ``--timeout-multiplier``
    for emulated targets: the deadlines stretch, nothing else does (``wait`` durations and metric
    bounds stay as written). ``EDEN_QEMU_TCG_SCALE`` sets it, from 1 to 10; anything else is an
    error.
    """
    raw = os.environ.get(TCG_SCALE_ENV, "").strip()
    if not raw:
        return TCG_SCALE_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 1.0 <= value <= TCG_SCALE_MAX:  # also false for nan
        raise InfrastructureError(f"{TCG_SCALE_ENV}={raw!r}: expected a number from 1 to {TCG_SCALE_MAX:g}")
    return value


async def probe_accel(
    kernel: Path | None, qemu: str = "qemu-system-x86_64", deadline: Deadline | None = None
) -> Accel:
    """KVM if it really boots ``kernel`` here, else TCG; cached per process.

    Without a kernel to probe with the answer is TCG (a stub guest is not proof). A working KVM gets
    through the probe in well under a second; the default deadline is 3 s.
    ``EDEN_QEMU_ACCEL=tcg|kvm`` skips the probe.
    """
    forced = os.environ.get(ACCEL_ENV, "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced  # type: ignore[return-value]
    if forced:
        raise InfrastructureError(f"{ACCEL_ENV}={forced!r}: expected 'kvm' or 'tcg'")
    if kernel is None or not kvm_device_usable():
        return "tcg"
    key = (qemu, str(kernel))
    loop = asyncio.get_running_loop()
    for old in [lp for lp in _accel_locks if lp.is_closed()]:
        del _accel_locks[old]
    async with _accel_locks.setdefault(loop, asyncio.Lock()):
        if key not in _accel_cache:
            ok = False
            with contextlib.suppress(OSError):
                ok = await boots_with(qemu, "kvm", kernel, deadline or Deadline(3.0))
            _accel_cache[key] = "kvm" if ok else "tcg"
        return _accel_cache[key]


def forget_probe() -> None:
    """Drop cached probe results (tests)."""
    _accel_cache.clear()
