#!/usr/bin/env python3
"""Harness overhead of eden.qemu against plain QEMU, booting the same guest to the same marker.

    python benchmarks/bench_qemu_overhead.py                # 5 rounds, with and without a TPM
    python benchmarks/bench_qemu_overhead.py --rounds 10 --marker EDEN-BOOT --json

Guest: Debian's cloud kernel + the busybox initramfs of eden.qemu.miniguest (TCG, 256 MB).
Each round runs both sides back to back (order alternating), each in a fresh directory:

* **eden**: ``Machine.power_on`` (host checks, swtpm_setup + swtpm, QEMU paused, QMP and console
  connected, hostfwd ports read, ``cont``) then ``console.expect(marker)``;
* **plain**: the same QEMU command line without QMP, ``-S`` and the console socket
  (``-serial stdio`` read by a subprocess pipe), with swtpm_setup + swtpm started by hand when the
  TPM is on.

Time is from just before anything is started to the marker on the console. The KVM probe is not
in either figure (``accel=tcg`` on both; the probe runs once per process and is reported apart).
Target (issue 5): overhead <= 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eden.runtime.deadline import Deadline  # noqa: E402
from eden.qemu import hostcheck  # noqa: E402
from eden.qemu.machine import Machine, MachineConfig  # noqa: E402
from eden.qemu.miniguest import build_initramfs, fetch_cloud_kernel  # noqa: E402

APPEND = "console=ttyS0 quiet panic=-1"


async def eden_boot(cfg: MachineConfig, run_dir: Path, marker: str) -> tuple[float, float]:
    """(start to marker, start to guest running) in seconds."""
    t0 = time.monotonic()
    async with Machine(cfg, run_dir) as vm:
        await vm.power_on(Deadline(60))
        running = time.monotonic() - t0
        assert vm.console is not None
        await vm.console.expect(marker, Deadline(60))
        took = time.monotonic() - t0
    return took, running


def plain_argv(cfg: MachineConfig, run_dir: Path, tpm_sock: Path | None) -> list[str]:
    c = cfg
    argv = [shutil.which(c.qemu) or c.qemu, "-name", c.name, "-machine", c.machine, "-accel", "tcg",
            "-m", str(c.memory_mb), "-smp", str(c.cpus), "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-monitor", "none",
            "-kernel", str(c.kernel), "-append", c.append, "-initrd", str(c.initrd),
            "-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:0-:22",
            "-device", f"{c.nic_model},netdev=net0,mac={c.mac}", "-device", "pvpanic"]
    if tpm_sock is not None:
        argv += ["-chardev", f"socket,id=chrtpm,path={tpm_sock}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                 "-device", "tpm-tis,tpmdev=tpm0"]
    return argv


def plain_boot(cfg: MachineConfig, run_dir: Path, marker: str) -> float:
    run_dir.mkdir(parents=True)
    t0 = time.monotonic()
    swtpm = None
    sock = None
    if cfg.tpm:
        state = run_dir / "tpm"
        state.mkdir()
        subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--create-ek-cert"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock = run_dir / "swtpm.sock"
        swtpm = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--ctrl",
                                  f"type=unixio,path={sock}", "--terminate"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not sock.exists():
            time.sleep(0.005)
    qemu = subprocess.Popen(plain_argv(cfg, run_dir, sock), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        assert qemu.stdout is not None
        seen = b""
        want = marker.encode()
        while want not in seen:
            chunk = os.read(qemu.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("plain QEMU exited before the marker")
            seen = seen[-len(want):] + chunk
        return time.monotonic() - t0
    finally:
        qemu.kill()
        qemu.wait()
        if swtpm is not None:
            swtpm.kill()
            swtpm.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--marker", default="EDEN-READY")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    kdir = fetch_cloud_kernel()
    results: dict[str, object] = {"marker": args.marker, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="eden-bench-qemu-") as tmp:
        work = Path(tmp)
        initrd = build_initramfs(work / "initrd.cpio", kdir)
        t = time.monotonic()
        accel = asyncio.run(hostcheck.probe_accel(kdir / "vmlinuz"))
        results["kvm_probe"] = {"seconds": round(time.monotonic() - t, 3), "result": accel}
        for tpm in (False, True):
            cfg = MachineConfig(kernel=kdir / "vmlinuz", initrd=initrd, append=APPEND, accel="tcg", tpm=tpm)
            eden: list[float] = []
            plain: list[float] = []
            power_on: list[float] = []
            for r in range(args.rounds):
                order = ("eden", "plain") if r % 2 == 0 else ("plain", "eden")
                for side in order:
                    d = work / f"{side}-{int(tpm)}-{r}"
                    if side == "eden":
                        took, running = asyncio.run(eden_boot(cfg, d, args.marker))
                        eden.append(took)
                        power_on.append(running)
                    else:
                        plain.append(plain_boot(cfg, d, args.marker))
            me, mp = statistics.median(eden), statistics.median(plain)
            results["tpm" if tpm else "no_tpm"] = {
                "eden_s": [round(x, 3) for x in eden],
                "plain_s": [round(x, 3) for x in plain],
                "eden_median_s": round(me, 3),
                "plain_median_s": round(mp, 3),
                "overhead_pct": round(100 * (me - mp) / mp, 1),
                "eden_power_on_median_s": round(statistics.median(power_on), 3),
            }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"marker {args.marker!r}, {args.rounds} rounds, TCG; KVM probe: {results['kvm_probe']}")
        for key in ("no_tpm", "tpm"):
            r = results[key]
            assert isinstance(r, dict)
            print(f"{key:7s} eden median {r['eden_median_s']:.3f} s  plain median {r['plain_median_s']:.3f} s"
                  f"  overhead {r['overhead_pct']:+.1f} %  (eden power_on until the guest runs:"
                  f" {r['eden_power_on_median_s']:.3f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
