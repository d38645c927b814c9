"""Kernel module load order without kmod: read ``depends=`` from each ``.ko``'s ``.modinfo``.

The Debian cloud kernel ships no ``modules.dep`` and the guest initramfs has no ``modprobe``
database, so the build resolves the dependencies of the modules it needs (virtio-net) and writes
them in load order for ``insmod``.
"""

from __future__ import annotations

import re
from pathlib import Path

_DEPENDS = re.compile(rb"(?:^|\0)depends=([^\0]*)\0")


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores) -> its ``.ko`` file."""
    return {p.name[:-3].replace("-", "_"): p for p in modules_dir.rglob("*.ko")}


def depends(ko: Path) -> list[str]:
    m = _DEPENDS.search(ko.read_bytes())
    if m is None or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def load_order(modules_dir: Path, wanted: list[str]) -> list[Path]:
    """The ``.ko`` files to insmod, dependencies first; ValueError for an unknown module."""
    index = module_index(modules_dir)
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name not in index:
            raise ValueError(f"kernel module {name!r} not found (needed by {' -> '.join(chain) or 'the image'})")
        seen.add(name)
        for dep in depends(index[name]):
            visit(dep, chain + (name,))
        order.append(index[name])

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order
