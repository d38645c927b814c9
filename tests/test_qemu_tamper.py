"""Real tamper on the reference image under QEMU TCG + swtpm (eden/qemu/tamper.py, docs/qemu.md).

One disk and one swtpm state directory, five power-ons: an untampered baseline, then each stage
applied while the VM is off. PCRs reset at every power-on (a new swtpm process, TPM2_Startup CLEAR),
so each boot's PCRs (read with ``tpm2_pcrread`` by the boot stage and printed as the ``pcrs`` console
marker) differ from the previous boot's in exactly the stage's PCRs, and every boot still reaches
the rootfs and sshd.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from eden.errors import InvalidInput
from eden.image.build import build, default_cache
from eden.image.layout import Image, qemu_args, write_config
from eden.qemu.tamper import EXPECTED_PCRS, TamperTarget, apply_tamper, read_config

_MARK = re.compile(rb"EDEN-BOOT: pcrs sha256 ([0-9a-f= ]+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _boot(image: Image, disk: Path, work: Path, append: str, extra: tuple[str, ...], n: int,
          ssh: tuple[int, Path] | None = None) -> tuple[dict[int, str], str, float]:
    """Power on, wait for the PCR marker and sshd, power off; (PCRs, SSH output or '', seconds)."""
    tpm, sock, log = work / "tpm", work / "swtpm.sock", work / f"serial-{n}.log"
    if not tpm.exists():
        tpm.mkdir()
        subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(tpm)], check=True, capture_output=True, timeout=60)
    sock.unlink(missing_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    try:
        procs.append(subprocess.Popen(["swtpm", "socket", "--tpmstate", f"dir={tpm}", "--tpm2",
                                       "--ctrl", f"type=unixio,path={sock}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, "swtpm did not start"
            time.sleep(0.05)
        argv = qemu_args(image, disk, tpm_socket=sock, serial=f"file:{log}",
                         ssh_port=ssh[0] if ssh else None, smbios_serial="eden-tamper-1")
        argv[argv.index("-append") + 1] = append
        procs.append(subprocess.Popen(argv + list(extra) + ["-monitor", "none"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=(work / "qemu.err").open("wb")))
        deadline = time.monotonic() + 120
        while b"EDEN-BOOT: sshd" not in (text := log.read_bytes() if log.exists() else b""):
            assert b"error=" not in text, text[-3000:]
            assert procs[1].poll() is None, (work / "qemu.err").read_text()
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.1)
        m = _MARK.search(text)
        assert m, text[-3000:]
        pcrs = {int(k): v for k, v in (kv.split("=") for kv in m.group(1).decode().split())}
        assert sorted(pcrs) == list(range(16)), pcrs
        out = _ssh(*ssh) if ssh else ""
        return pcrs, out, time.monotonic() - t0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _ssh(port: int, key: Path, timeout: float = 60) -> str:
    import paramiko

    deadline = time.monotonic() + timeout
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect("127.0.0.1", port=port, username="root", key_filename=str(key), timeout=10,
                           banner_timeout=20, auth_timeout=20, allow_agent=False, look_for_keys=False)
            _, stdout, _ = client.exec_command("tpm2_pcrread sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", timeout=30)
            return stdout.read().decode()
        except (OSError, paramiko.SSHException):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
        finally:
            client.close()


def _changed(a: dict[int, str], b: dict[int, str]) -> set[int]:
    return {i for i in a if a[i] != b[i]}


def test_unknown_stage_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown tamper stage 'kernel'"):
        apply_tamper("kernel", TamperTarget(Image(tmp_path, {}), tmp_path / "disk.img", tmp_path, "console=ttyS0"))


@pytest.mark.slow
def test_tamper_changes_files_consistently(tmp_path: Path) -> None:
    """Without booting: what each stage writes, and that repeating a stage makes a new change."""
    from eden.image import bootstate as bs
    from eden.image.verity import read_descriptor

    image = Image.load(build(default_cache()))
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image.disk), str(disk)], check=True)
    write_config(image, disk, {"hostname": "h\n", "authorized_keys": "ssh-ed25519 AAAA me\n"})
    t = TamperTarget(image, disk, tmp_path / "dev", image.info["cmdline"], ("-smbios", "type=1,serial=x"))
    t.directory.mkdir()

    fw1 = apply_tamper("firmware", t)
    rom = fw1.files[0].read_bytes()
    assert rom[:2] == b"\x55\xaa" and sum(rom) % 256 == 0 and rom != Path("/usr/share/qemu/linuxboot_dma.bin").read_bytes()
    assert fw1.extra_args == ("-smbios", "type=1,serial=x", "-L", str(t.directory / "firmware"))
    fw2 = apply_tamper("firmware", TamperTarget(image, disk, t.directory, fw1.append, fw1.extra_args))
    assert fw2.extra_args == fw1.extra_args and fw2.data["rom_sha1"] != fw1.data["rom_sha1"]

    bl = apply_tamper("bootloader", t)
    assert bl.append == image.info["cmdline"] + " eden.tampered=1" and bl.pcrs == (8,)
    assert apply_tamper("bootloader", TamperTarget(image, disk, t.directory, bl.append)).append.endswith(
        "eden.tampered=1 eden.tampered=2")

    # B is updating: the boot stage would pick B, so B is what changes; A stays as built.
    a_off, b_off = image.partition("IMGA")[0], image.partition("IMGB")[0]
    bs.write(disk, bs.set_updating(bs.FACTORY, "B"), offset=image.partition("BOOTSTATE")[0])
    a_before = read_descriptor(disk, a_off)
    rf = apply_tamper("rootfs", t)
    assert rf.data["slot"] == "B" and read_descriptor(disk, b_off).root == rf.data["new_root"] != rf.data["old_root"]
    assert read_descriptor(disk, a_off) == a_before
    assert bs.read(disk, offset=image.partition("BOOTSTATE")[0]) == bs.set_updating(bs.FACTORY, "B")
    assert not list(t.directory.glob("eden-tamper-*"))  # the work copy is gone

    cf = apply_tamper("config", t)
    files = read_config(image, disk)
    assert files["hostname"] == b"h\n" and files["authorized_keys"].startswith(b"ssh-ed25519 AAAA me\n")
    assert b"attacker@eden-tamper-1" in files["authorized_keys"] and cf.pcrs == (14,)
    apply_tamper("config", t)
    assert b"attacker@eden-tamper-2" in read_config(image, disk)["authorized_keys"]


@pytest.mark.slow
@pytest.mark.qemu
def test_each_tamper_stage_changes_exactly_its_pcrs_on_a_real_vm(tmp_path: Path) -> None:
    missing = [t for t in ("qemu-system-x86_64", "swtpm", "swtpm_setup", "debootstrap", "debugfs") if not shutil.which(t)]
    assert not missing, f"missing host tools {missing}: run scripts/install-system-deps as root"
    image = Image.load(build(default_cache()))
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image.disk), str(disk)], check=True)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    write_config(image, disk, {"authorized_keys": key.with_suffix(".pub").read_text(), "hostname": "eden-tamper"})
    target = TamperTarget(image, disk, tmp_path, image.info["cmdline"])

    previous, _, took = _boot(image, disk, tmp_path, target.append, target.extra_args, 0)
    baseline = previous
    timings = {"baseline": took}
    assert previous[13] == image.info["expected_pcr13"]
    assert {i for i, v in previous.items() if v.strip("0")} == {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 13, 14}
    for n, stage in enumerate(("firmware", "bootloader", "rootfs", "config"), 1):
        t0 = time.monotonic()
        result = apply_tamper(stage, target)
        timings[f"apply {stage}"] = time.monotonic() - t0
        assert result.pcrs == EXPECTED_PCRS[stage]
        target = TamperTarget(image, disk, tmp_path, result.append, result.extra_args)
        last = stage == "config"
        ssh = (_free_port(), key) if last else None
        pcrs, out, took = _boot(image, disk, tmp_path, target.append, target.extra_args, n, ssh)
        timings[stage] = took
        assert _changed(previous, pcrs) == set(result.pcrs), (stage, previous, pcrs)
        previous = pcrs
    assert _changed(baseline, previous) == {2, 8, 10, 13, 14}
    # The rootfs reads the same real PCRs, and the tampered CONFIG still holds our key plus the attacker's.
    in_rootfs = {int(i): v.lower() for i, v in re.findall(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]{64})$", out, re.M)}
    assert in_rootfs == previous, out
    keys = read_config(image, disk)["authorized_keys"].decode()
    assert key.with_suffix(".pub").read_text().strip() in keys and "attacker@eden-tamper-1" in keys
    print("\n" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
