"""The reference image boots for real under QEMU TCG with swtpm.

One image build (or the cached one), three power-ons of one disk:
1. factory state: the boot stage picks A, measures it into PCR 13 (the value the image build
   predicts), mounts it through dm-verity, the rootfs starts networking, dropbear (key from the
   CONFIG partition) and the agent;
2. B holds a tampered image (one block changed, verity tree rebuilt by the attacker) and is marked
   ``updating``: the boot stage picks B on its own, spends its one try (B becomes ``inprogress`` on
   disk) and PCR 13 differs;
3. no commit happened, so the next power-on falls back to A, with the clean PCR 13 again; a block
   of A changed behind the hash tree's back cannot be read (dm-verity EIO).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from eden.image import bootstate as bs
from eden.image.build import build, default_cache
from eden.image.layout import Image, qemu_args, write_config
from eden.image.verity import BLOCK, make_slot, read_descriptor

pytestmark = [pytest.mark.slow, pytest.mark.qemu]

MARKERS = ["stage=initramfs", "slot=", "measured-rootfs", "measured pcr=13", "switch_root", "stage=rootfs",
           "network", "sshd", "agent-start"]
_MARK = re.compile(r"EDEN-BOOT: (\S+)(.*)")


@pytest.fixture(scope="module")
def image() -> Image:
    missing = [t for t in ("qemu-system-x86_64", "swtpm", "swtpm_setup", "debootstrap", "mke2fs") if not shutil.which(t)]
    assert not missing, f"missing host tools {missing}: run scripts/install-system-deps as root"
    t0 = time.monotonic()
    d = build(default_cache())
    print(f"\nimage {d} ready in {time.monotonic() - t0:.1f} s")
    return Image.load(d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Boot:
    """One power-on: swtpm + QEMU; the serial log is polled for markers against deadlines."""

    def __init__(self, image: Image, disk: Path, work: Path, ssh_port: int | None = None) -> None:
        self.image, self.disk, self.work, self.ssh_port = image, disk, work, ssh_port
        self.log = work / "serial.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.t0 = 0.0

    def __enter__(self) -> "Boot":
        tpm = self.work / "tpm"
        if not tpm.exists():
            tpm.mkdir()
            subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(tpm), "--create-ek-cert"],
                           check=True, capture_output=True, timeout=60)
        sock = self.work / "swtpm.sock"
        sock.unlink(missing_ok=True)
        self.log.unlink(missing_ok=True)
        try:
            self.procs.append(subprocess.Popen(["swtpm", "socket", "--tpmstate", f"dir={tpm}", "--tpm2",
                                                "--ctrl", f"type=unixio,path={sock}"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 30
            while not sock.exists():
                assert time.monotonic() < deadline and self.procs[0].poll() is None, "swtpm did not start"
                time.sleep(0.05)
            argv = qemu_args(self.image, self.disk, tpm_socket=sock, serial=f"file:{self.log}",
                             ssh_port=self.ssh_port, smbios_serial="eden-test-1")
            self.t0 = time.monotonic()
            self.procs.append(subprocess.Popen(argv + ["-monitor", "none"], stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=(self.work / "qemu.err").open("wb")))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        assert all(p.poll() is not None for p in self.procs)

    def markers(self) -> list[tuple[str, str]]:
        text = self.log.read_bytes().decode("latin-1") if self.log.exists() else ""
        return [(m[1], m[2].strip()) for m in _MARK.finditer(text)]

    def wait_text(self, text: str, timeout: float = 120) -> float:
        """Wait until ``text`` is on the console; seconds since QEMU started."""
        deadline = time.monotonic() + timeout
        while text.encode() not in (self.log.read_bytes() if self.log.exists() else b""):
            qemu = self.procs[-1]
            assert qemu.poll() is None, f"QEMU exited {qemu.returncode}: {(self.work / 'qemu.err').read_text()}"
            assert time.monotonic() < deadline, f"no {text!r} in {timeout} s:\n{self.log.read_bytes()[-3000:]!r}"
            time.sleep(0.1)
        return time.monotonic() - self.t0

    def wait_for(self, marker: str, timeout: float = 120) -> dict[str, str]:
        """Wait until a marker starting with ``marker``; return it parsed as key=value (plus 'at' seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            for name, rest in self.markers():
                if name.startswith("error="):
                    raise AssertionError(f"boot stage error: {name} {rest}\n{self.log.read_bytes()[-3000:]!r}")
                if (name + " " + rest).startswith(marker):
                    fields = dict(kv.split("=", 1) for kv in (name + " " + rest).split() if "=" in kv)
                    fields["at"] = f"{time.monotonic() - self.t0:.2f}"
                    return fields
            qemu = self.procs[-1]
            assert qemu.poll() is None, f"QEMU exited {qemu.returncode}: {(self.work / 'qemu.err').read_text()}"
            assert time.monotonic() < deadline, f"no {marker!r} in {timeout} s:\n{self.log.read_bytes()[-3000:]!r}"
            time.sleep(0.1)


def _ssh(port: int, key: Path, command: str, timeout: float = 40) -> str:
    import paramiko

    deadline = time.monotonic() + timeout
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect("127.0.0.1", port=port, username="root", key_filename=str(key), timeout=10,
                           banner_timeout=20, auth_timeout=20, allow_agent=False, look_for_keys=False)
            _, stdout, stderr = client.exec_command(command, timeout=30)
            out = stdout.read().decode()
            assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
            return out
        except (OSError, paramiko.SSHException):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
        finally:
            client.close()


def _bootstate(image: Image, disk: Path) -> bs.BootState:
    return bs.read(disk, offset=image.partition("BOOTSTATE")[0])


@pytest.fixture()
def disk(image: Image, tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image.disk), str(d)], check=True)
    yield d


def test_real_ab_boot_measured_boot_and_fallback(image: Image, disk: Path, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    write_config(image, disk, {"authorized_keys": (tmp_path / "id_ed25519.pub").read_text(), "hostname": "eden-test"})
    assert _bootstate(image, disk) == bs.FACTORY

    # 1. Factory state: A.
    port = _free_port()
    with Boot(image, disk, tmp_path, ssh_port=port) as boot:
        slot = boot.wait_for("slot=")
        measured = boot.wait_for("measured pcr=13")
        started = boot.wait_for("agent-start", timeout=60)
        names = [n for n, _ in boot.markers()]
        order = [next(i for i, n in enumerate(names) if (n + " ").startswith(m) or n.startswith(m.split()[0]))
                 for m in MARKERS]
        assert order == sorted(order), names
        guest = _ssh(port, key, "cat /run/eden/boot.env; hostname; tpm2_pcrread sha256:13; mount; dmsetup table;"
                                " PYTHONPATH=/opt/eden:/opt/eden/site-packages python3 -m eden.image.guest show")
    print(f"\npower-on to agent-start: {started['at']} s wall (guest uptime {started['uptime']} s)")
    assert (slot["slot"], slot["priority"], slot["tries"], slot["successful"]) == ("A", "2", "0", "1")
    assert measured["rootfs"] == image.info["rootfs_sha256"]
    assert measured["sha256"] == image.info["expected_pcr13"]  # fresh TPM: extend(0...0, rootfs)
    assert "EDEN_SLOT=A" in guest and "eden-test" in guest
    assert '{"booted": "A", "state": {"A": {"attr": "0x102"' in guest, guest  # the agent-side library in the guest
    assert "0x" + image.info["expected_pcr13"].upper() in guest  # the rootfs reads the same real PCR
    assert re.search(r"/dev/mapper/eden-root on / type ext4 \(ro", guest), guest
    assert re.search(rf"verity 1 (\d+):2 \1:2 4096 4096 {image.info['verity']['data_blocks']} ", guest), guest
    assert image.info["verity"]["root"] in guest
    assert re.search(r"/dev/vda5 on /persist type ext4 \(rw", guest), guest
    assert _bootstate(image, disk) == bs.FACTORY  # active A has no tries to spend

    # 2. B: a tampered image: one block of the filesystem changed and the verity tree rebuilt.
    a_off, _ = image.partition("IMGA")
    b_off, _ = image.partition("IMGB")
    fs_bytes = int(image.info["rootfs_bytes"])
    fs = tmp_path / "tampered.ext4"
    with open(disk, "rb") as src, open(fs, "wb") as dst:
        src.seek(a_off)
        dst.write(src.read(fs_bytes))
    with open(fs, "r+b") as f:
        f.seek(fs_bytes - BLOCK)  # the last block: free space, so the filesystem still works
        f.write(b"tampered".ljust(BLOCK, b"!"))
    desc = make_slot(fs, tmp_path / "tampered.slot", image.info["verity"]["salt"])
    assert desc.root != image.info["verity"]["root"]
    with open(disk, "r+b") as f:
        f.seek(b_off)
        f.write((tmp_path / "tampered.slot").read_bytes())
    assert read_descriptor(disk, b_off) == desc
    bs.write(disk, bs.set_updating(bs.FACTORY, "B"), offset=image.partition("BOOTSTATE")[0])
    with Boot(image, disk, tmp_path) as boot:
        slot = boot.wait_for("slot=")
        tampered = boot.wait_for("measured pcr=13")
        boot.wait_for("agent-start", timeout=60)
    assert (slot["slot"], slot["priority"], slot["tries"], slot["successful"]) == ("B", "3", "0", "0")
    assert tampered["rootfs"] != image.info["rootfs_sha256"]
    assert tampered["sha256"] != measured["sha256"]
    assert _bootstate(image, disk) == bs.BootState(bs.ACTIVE, bs.INPROGRESS)  # written by the boot stage

    # 3. Nobody committed B: the next power-on falls back to A, clean measurement again. A block of
    #    A changed without rebuilding the tree leaves PCR 13 alone but cannot be read.
    with open(disk, "r+b") as f:
        f.seek(a_off + fs_bytes - BLOCK)
        f.write(b"behind verity's back".ljust(BLOCK, b"?"))
    port = _free_port()
    with Boot(image, disk, tmp_path, ssh_port=port) as boot:
        slot = boot.wait_for("slot=")
        again = boot.wait_for("measured pcr=13")
        boot.wait_for("sshd")
        last = fs_bytes // BLOCK - 1
        probe = _ssh(port, key, f"dd if=/dev/mapper/eden-root of=/dev/null bs=4096 skip={last} count=1 2>&1; echo rc=$?;"
                                f" dd if=/dev/mapper/eden-root of=/dev/null bs=4096 skip={last - 1} count=1 2>&1; echo rc=$?")
    assert slot["slot"] == "A"
    assert again["sha256"] == measured["sha256"]
    assert _bootstate(image, disk) == bs.BootState(bs.ACTIVE, bs.INPROGRESS)
    first, second = probe.split("rc=")[1:3]
    assert "error" in probe.lower() and not first.startswith("0"), probe  # the changed block: EIO
    assert second.startswith("0"), probe  # its untouched neighbour reads fine


def test_the_agent_in_the_image_onboards_to_a_real_controller(image: Image, disk: Path, tmp_path: Path) -> None:
    """CONFIG partition from ``eden controller device-config``; the guest reaches the host as 10.0.2.2."""
    import sys

    from eden.controller.testing import ServeProcess

    ctl, cfg = tmp_path / "ctl", tmp_path / "cfg"
    eden = [sys.executable, "-m", "eden.cli", "controller"]
    subprocess.run(eden + ["init", str(ctl), "--server", "10.0.2.2:8443"], check=True, capture_output=True)
    with ServeProcess(ctl) as serve:
        subprocess.run(eden + ["device-config", "--dir", str(ctl), "--serial", "eden-test-1", "--out", str(cfg)],
                       check=True, capture_output=True)
        (cfg / "server").write_text(f"10.0.2.2:{serve.info['api_port']}\n")
        write_config(image, disk, {p.name: p.read_bytes() for p in cfg.iterdir()})
        with Boot(image, disk, tmp_path) as boot:
            started = boot.wait_text("EDEN-BOOT: agent-start", timeout=60)
            onboarded = boot.wait_text('"what":"onboarded"', timeout=90)
        devices = subprocess.run(eden + ["devices", "--dir", str(ctl)], check=True, capture_output=True, text=True).stdout
    print(f"\npower-on to agent-start {started:.1f} s, to onboarded {onboarded:.1f} s (TCG)")
    assert "eden-test-1" in devices
    assert '"device":"eden-test-1"' in boot.log.read_text(errors="replace")  # serial from SMBIOS
