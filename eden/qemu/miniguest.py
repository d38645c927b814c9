"""A tiny Linux guest for tests and benchmarks: Debian's cloud kernel plus a busybox initramfs.

The kernel is fetched with ``apt-get download`` (pinned to the version the ``linux-image-cloud-amd64``
meta-package names) and unpacked with ``dpkg-deb`` into a cache directory; nothing is installed on
the host. The initramfs is written here as a ``newc`` cpio archive (no ``cpio`` tool needed) holding
the host's static busybox, the virtio-net modules in dependency order, and an ``/init`` that prints
``EDEN-*`` markers on the serial console and obeys one-word commands typed into it.

Markers: ``EDEN-BOOT uptime=S``, ``EDEN-TPM present|absent``, ``EDEN-LINK 0|1`` (carrier changes),
``EDEN-SSHD started`` (when built with a key), ``EDEN-READY``; commands: ``reboot``, ``poweroff``, ``panic``, anything else is echoed as ``EDEN-ECHO``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from eden.errors import InfrastructureError

META_PACKAGE = "linux-image-cloud-amd64"
CACHE_ENV = "EDEN_CACHE_DIR"
#: Loaded at boot, with what they depend on: the NIC, and pvpanic (GUEST_PANICKED events).
GUEST_MODULES = ("virtio_pci", "virtio_net", "pvpanic_mmio")
#: Bump when the cached kernel directory's contents change.
CACHE_LAYOUT = "2"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "EDEN-BOOT uptime=$(cut -d' ' -f1 /proc/uptime)"
if [ -e /dev/tpm0 ]; then echo "EDEN-TPM present"; else echo "EDEN-TPM absent"; fi
for m in $(cat /modules.order); do insmod /lib/modules/$m.ko || echo "EDEN-INSMOD-FAILED $m"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add 10.0.2.15/24 dev eth0
  last=$(cat /sys/class/net/eth0/carrier 2>/dev/null); echo "EDEN-LINK $last"
  ( while true; do c=$(cat /sys/class/net/eth0/carrier 2>/dev/null);
      if [ "$c" != "$last" ]; then echo "EDEN-LINK $c"; last=$c; fi; sleep 0.1; done ) &
fi
if [ -x /usr/sbin/dropbear ]; then
  ip link set lo up
  ip route add default via 10.0.2.2
  /usr/sbin/dropbear -s -r /etc/dropbear/hostkey -p 22 -P /tmp/dropbear.pid && echo "EDEN-SSHD started"
fi
echo "EDEN-READY"
while read -r cmd; do
  case "$cmd" in
    reboot) echo "EDEN-REBOOTING"; reboot -f ;;
    poweroff) echo "EDEN-POWEROFF"; poweroff -f ;;
    panic) echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger ;;
    "") ;;
    *) echo "EDEN-ECHO $cmd" ;;
  esac
done
"""


def cache_dir() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "eden")
    return Path(base)


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfrastructureError(f"{argv[0]} failed: {exc}") from exc
    if done.returncode != 0:
        raise InfrastructureError(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def cloud_kernel_package() -> str:
    """The exact kernel package the meta-package depends on (never a glob: that fetches every version)."""
    out = _run(["apt-cache", "depends", META_PACKAGE])
    m = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)\b", out)
    if m is None:
        raise InfrastructureError(f"cannot tell which kernel {META_PACKAGE} depends on:\n{out}")
    return m.group(1)


def fetch_cloud_kernel(cache: Path | None = None) -> Path:
    """Directory with ``vmlinuz`` and ``modules/`` of Debian's cloud kernel, downloaded once."""
    package = cloud_kernel_package()
    target = (cache or cache_dir()) / "kernel" / f"{package}.{CACHE_LAYOUT}"
    if (target / "vmlinuz").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's _apt user writes the download here
        _run(["apt-get", "download", "-q", package], cwd=work)
        deb = next(work.glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(work / "x")])
        staged = work / "out"
        (staged / "modules").mkdir(parents=True)
        shutil.copyfile(next((work / "x" / "boot").glob("vmlinuz-*")), staged / "vmlinuz")
        moddir = next((work / "x" / "lib" / "modules").iterdir())
        for ko in moddir.rglob("*.ko"):
            wanted = ko.parent.name in ("virtio", "net", "pvpanic") or ko.parent.parent.name == "net"
            if wanted or "virtio" in ko.name:  # module names use "_" where file names may use "-"
                shutil.copyfile(ko, staged / "modules" / ko.name.replace("-", "_"))
        try:
            staged.rename(target)
        except OSError:  # another process won the race: theirs is as good
            if not (target / "vmlinuz").is_file():
                raise
    return target


def module_depends(ko: Path) -> list[str]:
    """The ``depends=`` field of a kernel module's .modinfo (names without .ko)."""
    data = ko.read_bytes()
    m = re.search(rb"\x00depends=([^\x00]*)\x00", data)
    if m is None or not m.group(1):
        return []
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d]


def load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """``wanted`` with their dependencies, dependencies first."""
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in stack:
            raise InfrastructureError(f"module dependency cycle: {' -> '.join(stack + (name,))}")
        ko = modules_dir / f"{name}.ko"
        if not ko.is_file():
            raise InfrastructureError(f"kernel module {name} not in {modules_dir}")
        for dep in module_depends(ko):
            visit(dep, stack + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


class _Cpio:
    """A minimal ``newc`` cpio writer (what the kernel unpacks as initramfs)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out += header + name.encode() + b"\x00"
        self.out += b"\x00" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\x00" * (-len(self.out) % 4)

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)
        self.dirs.add(name)

    def parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dir(d)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)


def shared_libs(binary: Path) -> list[Path]:
    """The shared libraries (and loader) a dynamically linked host binary needs, from ldd."""
    out = _run(["ldd", str(binary)])
    return [Path(p) for p in re.findall(r"(/\S+\.so[.\d]*)", out)]


def add_sshd(cpio: "_Cpio", authorized_key: str, work: Path) -> None:
    """The host's dropbear with its libraries, a host key and root's authorized_keys."""
    dropbear = Path(shutil.which("dropbear", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/dropbear")
    keygen = shutil.which("dropbearkey")
    if not dropbear.is_file() or keygen is None:
        raise InfrastructureError("dropbear not found (Debian package dropbear-bin)")
    hostkey = work / "hostkey"
    hostkey.unlink(missing_ok=True)
    _run([keygen, "-t", "ed25519", "-f", str(hostkey)])
    cpio.parents("usr/sbin/x")
    cpio.file("usr/sbin/dropbear", dropbear.read_bytes(), 0o755)
    for lib in shared_libs(dropbear):
        name = str(lib).lstrip("/")
        cpio.parents(name)
        cpio.file(name, lib.resolve().read_bytes(), 0o755)
    cpio.parents("etc/dropbear/x")
    cpio.file("etc/dropbear/hostkey", hostkey.read_bytes(), 0o600)
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    cpio.file("etc/shells", b"/bin/sh\n")
    cpio._entry("root", 0o040700)
    cpio._entry("root/.ssh", 0o040700)
    cpio.file("root/.ssh/authorized_keys", (authorized_key.strip() + "\n").encode(), 0o600)


def build_initramfs(
    dest: Path, kernel_dir: Path, *, init: str = INIT, busybox: Path = Path("/bin/busybox"),
    authorized_key: str | None = None,
) -> Path:
    """Write the test guest's initramfs to ``dest``; with ``authorized_key``, also an sshd on port 22."""
    if not busybox.is_file():
        raise InfrastructureError(f"{busybox} not found (Debian package busybox-static)")
    order = load_order(kernel_dir / "modules", GUEST_MODULES)
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    for name in order:
        cpio.file(f"lib/modules/{name}.ko", (kernel_dir / "modules" / f"{name}.ko").read_bytes())
    cpio.file("modules.order", ("\n".join(order) + "\n").encode())
    cpio.file("init", init.encode(), 0o755)
    if authorized_key is not None:
        add_sshd(cpio, authorized_key, dest.parent)
    dest.write_bytes(cpio.finish())
    return dest
