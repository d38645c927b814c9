"""Build the reference device image (docs/reference-image.md).

Steps: debootstrap bookworm minbase (python3, busybox-static, dropbear-bin, tpm2-tools) from the
host's apt mirror; the Debian cloud kernel with ``apt-get download`` + ``dpkg-deb -x``; the eden
sources and the agent's runtime wheels copied from the host venv into /opt/eden; an initramfs with
the boot stage (busybox, tpm2-tools, virtio-blk and virtio-net modules); ext4 images with ``mke2fs -d``; one GPT
disk. Output goes to ``<cache>/<key>/`` where ``key`` hashes every input (:func:`cache_key`).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from eden.errors import InfrastructureError, InvalidInput
from eden.image import bootstate
from eden.image.disk import MIB, Partition, write_cpio, write_gpt_disk
from eden.image.kmod import load_order
from eden.image.verity import make_slot

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SUITE = "bookworm"
PACKAGES = ("python3", "busybox-static", "dropbear-bin", "tpm2-tools", "dmsetup")
KERNEL_META = "linux-image-cloud-amd64"
NIC_MODULES = ("virtio_net", "virtio_pci")
DISK_MODULES = ("virtio_blk",)
VERITY_MODULES = ("dm_mod", "dm_verity")
GUEST_SCRIPTS = ("image-init", "image-bootstate.sh", "image-rc", "image-udhcpc", "image-agent-start", "image-inittab")
PROJECT_DIRS = ("eden", "eve", "simulator", "hw_profiles")
# What `eden agent` imports at run time (resolved to whole distributions of the host venv).
AGENT_MODULES = ("eden.cli", "eden.agent.cli", "eden.agent.driver", "eden.agent.transport", "eden.agent.state",
                 "eden.image.bootstate")
CMDLINE = "console=ttyS0,115200 panic=-1 quiet mitigations=off"
"""``mitigations=off``: no PTI or retpolines in this test VM. Under TCG every page-table switch
flushes QEMU's software TLB, and without them the guest boots ~15 % faster to its agent (7.0-7.3 s
against 8.3-8.4 s of guest uptime, one VM) and starts the agent faster."""
CONFIG_SIZE = 16 * MIB
PERSIST_SIZE = 512 * MIB
BOOTSTATE_SIZE = 1 * MIB
SLOT_MIN = 768 * MIB
FORMAT_VERSION = 2  # bump when the build logic changes in a way the hashed files do not show
TOOLS = ("debootstrap", "mke2fs", "veritysetup", "apt-get", "apt-cache", "dpkg-deb", "chroot")


def default_cache() -> Path:
    env = os.environ.get("EDEN_IMAGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "eden" / "images"


# --------------------------------------------------------------------------------------- inputs --
def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The host's Debian mirror (first ``.../debian`` URI in sources.list or deb822 .sources)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        for uri in re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", f.read_text(errors="replace"), re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def kernel_package() -> tuple[str, str]:
    """(exact package name, version) the cloud-kernel metapackage points at."""
    out = _run(["apt-cache", "depends", KERNEL_META]).stdout
    m = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)", out)
    if m is None:
        raise InfrastructureError(f"apt-cache does not know {KERNEL_META}; run apt-get update")
    name = m.group(1)
    pol = _run(["apt-cache", "policy", name]).stdout
    v = re.search(r"Candidate:\s*(\S+)", pol)
    return name, v.group(1) if v else "unknown"


def agent_distributions() -> list[md.Distribution]:
    """The venv distributions whose modules ``eden agent`` imports (checked in a fresh interpreter),
    with everything the full CLI parser imports, so that a lazy import at run time finds its module."""
    code = ("import sys, json\n" + "".join(f"import {m}\n" for m in AGENT_MODULES) + "eden.cli._parser([])\n"
            + "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    tops = set(json.loads(_run([sys.executable, "-c", code], cwd=REPO).stdout))
    owners = md.packages_distributions()
    names = sorted({d for t in tops for d in owners.get(t, []) if d not in ("eden", "setuptools")})
    return [md.distribution(n) for n in names]


def _dist_files(dist: md.Distribution) -> list[tuple[Path, str]]:
    """(absolute path, path relative to site-packages) of a distribution's files, minus caches/tests."""
    base = Path(str(dist.locate_file("")))
    out = []
    for f in dist.files or []:
        rel = str(f)
        if rel.startswith("..") or "__pycache__" in rel or "/tests/" in rel or rel.endswith((".pyc", ".pyi")):
            continue
        out.append((base / rel, rel))
    return out


@dataclass(frozen=True)
class Inputs:
    """Everything that makes an image; :meth:`key` is the cache key."""

    mirror: str
    kernel: tuple[str, str]
    dists: tuple[tuple[str, str], ...]  # (name, version)
    files_digest: str  # scripts + eden sources + profiles + this package
    authorized_keys: str

    def key(self) -> str:
        blob = json.dumps({"format": FORMAT_VERSION, "suite": SUITE, "packages": PACKAGES, "mirror": self.mirror,
                           "kernel": self.kernel, "dists": self.dists, "files": self.files_digest,
                           "cmdline": CMDLINE, "authorized_keys": self.authorized_keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _project_files() -> list[Path]:
    files = [SCRIPTS / s for s in GUEST_SCRIPTS]
    for d in PROJECT_DIRS:
        files += sorted(p for p in (REPO / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                        and p.suffix != ".pyc")
    return files


def collect_inputs(authorized_keys: Path | None = None) -> Inputs:
    h = hashlib.sha256()
    for f in _project_files():
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    keys = authorized_keys.read_text() if authorized_keys is not None else ""
    dists = tuple((d.metadata["Name"], d.version) for d in agent_distributions())
    return Inputs(apt_mirror(), kernel_package(), dists, h.hexdigest(), keys)


# ---------------------------------------------------------------------------------------- build --
def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise InfrastructureError(f"{argv[0]} is not installed (run scripts/install-system-deps)") from exc
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-15:]
        raise InfrastructureError(f"{' '.join(argv[:4])}... failed ({exc.returncode}):\n" + "\n".join(tail)) from exc


def preflight() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise InfrastructureError(f"missing host tools: {', '.join(missing)} (run scripts/install-system-deps as root)")
    if os.geteuid() != 0:
        raise InfrastructureError("eden image build needs root (debootstrap and chroot)")


def _ext4(src: Path, out: Path, label: str, size: int | None = None, journal: bool = True) -> int:
    """``mke2fs -d``: an ext4 image of ``src``; size defaults to the content plus headroom (MiB aligned)."""
    if size is None:
        # Allocated bytes (4 KiB granularity on the host, like the 4 KiB blocks here) + metadata room.
        used = int(_run(["du", "-s", "--block-size=1", str(src)]).stdout.split()[0])
        size = ((used * 27 // 25 + 24 * MIB) // MIB) * MIB
    out.unlink(missing_ok=True)
    argv = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", label, "-d", str(src), "-E", "root_owner=0:0",
            "-U", str(uuid.uuid5(uuid.NAMESPACE_URL, "eden:" + label)), "-m", "0"]
    if not journal:
        argv += ["-O", "^has_journal"]
    _run(argv + [str(out), f"{size // 1024}k"], env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"})
    return size


def _install(src: Path, dst: Path, mode: int = 0o755) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(mode)


def _customise_rootfs(root: Path, inputs: Inputs, version: str) -> None:
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/info", "usr/share/locale", "usr/lib/udev/hwdb.d", "usr/lib/udev/hwdb.bin",
                 "etc/udev/hwdb.bin", "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/lib2to3",
                 "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/idlelib", "usr/lib/python3.11/turtledemo",
                 "usr/lib/python3.11/tkinter"):
        shutil.rmtree(root / junk, ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    opt = root / "opt/eden"
    shutil.rmtree(opt, ignore_errors=True)
    for d in PROJECT_DIRS:
        shutil.copytree(REPO / d, opt / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = opt / "site-packages"
    for dist in agent_distributions():
        for src, rel in _dist_files(dist):
            if src.is_file():
                (site / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, site / rel)
    etc = root / "etc/eden"
    _install(SCRIPTS / "image-rc", etc / "rc")
    _install(SCRIPTS / "image-udhcpc", etc / "udhcpc.script")
    _install(SCRIPTS / "image-inittab", root / "etc/inittab", 0o644)
    _install(SCRIPTS / "image-agent-start", root / "usr/local/sbin/eden-agent-start")
    (etc / "authorized_keys").write_text(inputs.authorized_keys)
    (etc / "spec.json.in").write_text(json.dumps({
        # boot_time 1: the VM really booted already; the node model must not add a modelled boot.
        "serial": "@SERIAL@", "profile": "qemu-x86_64", "image": "ref", "boot_time": 1.0,
        "images": {"ref": {"version": version}}}, indent=1) + "\n")
    (etc / "image-version").write_text(version + "\n")
    for link in ("sbin/init", "sbin/reboot", "sbin/poweroff", "sbin/halt"):
        (root / link).unlink(missing_ok=True)
        (root / link).symlink_to("/bin/busybox")
    for applet in ("udhcpc", "ip", "hostname", "awk"):
        if not (root / "usr/bin" / applet).exists() and not (root / "bin" / applet).exists():
            (root / "usr/local/bin" / applet).symlink_to("/bin/busybox")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").symlink_to("/run/resolv.conf")
    (root / "etc/hostname").write_text("eden-ref\n")
    for d in ("persist", "config", "run", "tmp"):
        (root / d).mkdir(exist_ok=True)
    ssh = root / "root/.ssh"
    if ssh.is_symlink() or ssh.is_file():
        ssh.unlink()
    elif ssh.is_dir():
        shutil.rmtree(ssh)
    ssh.symlink_to("/run/ssh")
    (root / "etc/dropbear").mkdir(exist_ok=True)
    key = root / "etc/dropbear/dropbear_ed25519_host_key"
    if not key.exists():
        _run(["chroot", str(root), "dropbearkey", "-t", "ed25519", "-f", "/etc/dropbear/dropbear_ed25519_host_key"])
    # Byte-compile ahead: the root filesystem is mounted read-only, and TCG is slow to compile.
    _run(["chroot", str(root), "python3", "-m", "compileall", "-q", "-j", "0", "/opt/eden"])


def _initramfs(root: Path, kernel_dir: Path, kver: str, work: Path, out: Path) -> None:
    ird = work / "initramfs"
    shutil.rmtree(ird, ignore_errors=True)
    for d in ("bin", "dev", "proc", "sys", "run", "tmp", "newroot", "lib/eden"):
        (ird / d).mkdir(parents=True, exist_ok=True)
    _install(root / "bin/busybox", ird / "bin/busybox")
    _install(SCRIPTS / "image-init", ird / "init")
    _install(SCRIPTS / "image-bootstate.sh", ird / "lib/eden/bootstate.sh", 0o644)
    # tpm2-tools and dmsetup with the shared libraries they link, plus the TCTI tpm2 dlopens.
    paths: set[str] = set()
    for binary in ("/usr/bin/tpm2", "/usr/sbin/dmsetup"):
        paths |= set(re.findall(r"(/\S+\.so[.\d]*)", _run(["chroot", str(root), "ldd", binary]).stdout))
    paths |= {str(p.relative_to(root).as_posix()).join(["/", ""])
              for p in (root / "usr/lib/x86_64-linux-gnu").glob("libtss2-tcti-device.so*")}
    for p in sorted(paths):
        src = root / p.lstrip("/")
        _install(src.resolve(), ird / p.lstrip("/"), 0o755)
    _install(root / "usr/bin/tpm2", ird / "bin/tpm2")
    _install(root / "usr/sbin/dmsetup", ird / "bin/dmsetup")
    for tool in ("tpm2_pcrextend", "tpm2_pcrread"):
        (ird / "bin" / tool).symlink_to("tpm2")
    mods = kernel_dir / "lib/modules" / kver
    order = load_order(mods, list(DISK_MODULES + VERITY_MODULES + NIC_MODULES))
    lines = []
    for ko in order:
        rel = ko.relative_to(mods)
        _install(ko, ird / "lib/modules" / rel, 0o644)
        lines.append(str(rel))
    (ird / "lib/eden/modules.order").write_text("\n".join(lines) + "\n")
    cpio = work / "initrd.cpio"
    write_cpio(ird, cpio)
    with open(cpio, "rb") as src, gzip.GzipFile(out, "wb", compresslevel=6, mtime=0) as dst:
        shutil.copyfileobj(src, dst, MIB)
    cpio.unlink()


def _base_rootfs(cache: Path, mirror: str, root: Path, force: bool) -> None:
    """debootstrap into ``root``, or unpack the tarball of an earlier run with the same suite/packages/mirror.

    Only the package set is cached this way (``.base-<hash>.tar`` in the cache), so a change of the
    eden sources rebuilds in seconds rather than minutes; ``--force`` runs debootstrap again.
    """
    tag = hashlib.sha256(json.dumps([SUITE, PACKAGES, mirror]).encode()).hexdigest()[:16]
    tar = cache / f".base-{tag}.tar"
    if tar.is_file() and not force:
        root.mkdir()
        _run(["tar", "-C", str(root), "-xpf", str(tar)])
        return
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror])
    tmp = tar.with_suffix(f".tmp{os.getpid()}")
    _run(["tar", "-C", str(root), "--exclude=./var/cache/apt/archives/*.deb", "-cpf", str(tmp), "."])
    tmp.rename(tar)


KEEP = 3  # complete images kept in the cache (newest first); older ones are removed after a build


def build(cache: Path, force: bool = False, authorized_keys: Path | None = None,
          log: Callable[[str], None] = lambda s: None) -> Path:
    """Build (or reuse) the image; returns its directory (holding ``image.json``).

    Builds in one cache are serialised with a lock file (parallel test runs wait for the first
    build and then reuse it); leftovers of killed builds and all but the newest :data:`KEEP`
    images are removed while the lock is held.
    """
    if authorized_keys is not None and not authorized_keys.is_file():
        raise InvalidInput.at("--authorized-keys", 0, 0, f"{authorized_keys}: no such file")
    preflight()
    inputs = collect_inputs(authorized_keys)
    key = inputs.key()
    final = cache / key
    if (final / "image.json").is_file() and not force:
        log(f"cached: {final}")
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting for another build in this cache")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "image.json").is_file() and not force:
            log(f"cached: {final}")
            return final
        for stale in [*cache.glob(".*.build-*"), *cache.glob(".base-*.tmp*")]:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        out = _build(cache, inputs, key, force, log)
        for old in cached_images(cache)[KEEP:]:
            if Path(str(old["dir"])) != out:
                shutil.rmtree(str(old["dir"]), ignore_errors=True)
        return out


def _build(cache: Path, inputs: Inputs, key: str, force: bool, log: Callable[[str], None]) -> Path:
    final = cache / key
    work = cache / f".{key}.build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def step(name: str) -> None:
        timings[name] = round(time.monotonic() - t0 - sum(timings.values()), 1)
        log(f"{name}: {timings[name]} s")

    try:
        root = work / "rootfs"
        _base_rootfs(cache, inputs.mirror, root, force)
        step("debootstrap")
        kpkg, kver_deb = inputs.kernel
        _run(["apt-get", "download", f"{kpkg}={kver_deb}"], cwd=work)
        kdir = work / "kernel"
        deb = next(work.glob(f"{kpkg}_*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(kdir)])
        kver = kpkg.removeprefix("linux-image-")
        out = work / "out"
        out.mkdir()
        shutil.copyfile(kdir / "boot" / f"vmlinuz-{kver}", out / "vmlinuz")
        step("kernel")
        version = f"ref-{key[:8]}"
        _customise_rootfs(root, inputs, version)
        step("rootfs")
        _initramfs(root, kdir, kver, work, out / "initrd.img")
        step("initramfs")
        rootfs_img = work / "rootfs.ext4"
        fs_size = _ext4(root, rootfs_img, "ROOTFS", journal=False)
        slot_img = work / "rootfs.slot"
        desc = make_slot(rootfs_img, slot_img, hashlib.sha256(f"eden-verity:{key}".encode()).hexdigest())
        rootfs_img.unlink()
        rootfs_size = slot_img.stat().st_size
        # Room for a bigger image written by an update; the disk is sparse, so it costs nothing.
        slot_size = max(SLOT_MIN, ((rootfs_size + 128 * MIB) // MIB) * MIB)
        cfg_dir = work / "config"
        cfg_dir.mkdir()
        (cfg_dir / "README").write_text("EVE-style CONFIG partition: server, root-certificate.pem, onboard.*.pem, "
                                         "authorized_keys, spec.json (docs/reference-image.md)\n")
        config_img, persist_img, bs_img = work / "config.ext4", work / "persist.ext4", work / "bootstate.img"
        _ext4(cfg_dir, config_img, "CONFIG", CONFIG_SIZE)
        empty = work / "empty"
        empty.mkdir()
        _ext4(empty, persist_img, "P3", PERSIST_SIZE)
        bootstate.write(bs_img, bootstate.FACTORY)
        step("filesystems")
        placed = write_gpt_disk(out / "disk.img", [
            Partition("BOOTSTATE", BOOTSTATE_SIZE, bs_img),
            Partition("IMGA", slot_size, slot_img),
            Partition("IMGB", slot_size, slot_img),
            Partition("CONFIG", CONFIG_SIZE, config_img),
            Partition("P3", PERSIST_SIZE, persist_img),
        ], uuid.uuid5(uuid.NAMESPACE_URL, "eden-image:" + key))
        step("disk")
        info = {
            "key": key, "version": version, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - t0, 1), "timings": timings,
            "kernel": {"package": kpkg, "version": kver_deb, "release": kver}, "mirror": inputs.mirror,
            "packages": list(PACKAGES), "python_dists": [f"{n}=={v}" for n, v in inputs.dists],
            "files": {"kernel": "vmlinuz", "initrd": "initrd.img", "disk": "disk.img"},
            "cmdline": CMDLINE,
            "partitions": [{"name": p.name, "number": p.number, "offset": p.offset, "size": p.size} for p in placed],
            "rootfs_bytes": fs_size, "slot_bytes": rootfs_size,
            "verity": {"root": desc.root, "salt": desc.salt, "data_blocks": desc.data_blocks,
                       "hash_start": desc.hash_start},
            "rootfs_sha256": desc.sha256,  # the measurement: sha256 of the verity descriptor block
            "expected_pcr13": hashlib.sha256(bytes(32) + bytes.fromhex(desc.sha256)).hexdigest(),
        }
        (out / "image.json").write_text(json.dumps(info, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
        log(f"built in {info['build_seconds']} s: {final}")
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cached_images(cache: Path) -> list[dict[str, object]]:
    """``image.json`` of every complete image in ``cache`` (newest first), with its directory and size."""
    out = []
    for info_file in cache.glob("*/image.json"):
        info = json.loads(info_file.read_text())
        info["dir"] = str(info_file.parent)
        info["disk_bytes"] = sum(f.stat().st_blocks * 512 for f in info_file.parent.iterdir())
        out.append(info)
    return sorted(out, key=lambda i: str(i.get("built", "")), reverse=True)
