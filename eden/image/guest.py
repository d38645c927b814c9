"""The agent's side of the A/B boot inside the reference image (spec §3).

The boot stage leaves ``/run/eden/boot.env`` (slot, boot-state device, ...). With it the agent
commits the booted slot after its test window, installs a new root filesystem slot into the other
partition and gives it its one try, all through :mod:`eden.image.bootstate`, the same format the
boot stage reads. A reboot before the commit falls back on its own: the try is spent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eden.image import bootstate as bs
from eden.image.verity import BLOCK, read_descriptor

BOOT_ENV = Path("/run/eden/boot.env")
SYS_BLOCK = Path("/sys/class/block")


def partition_device(name: str, sys_block: Path = SYS_BLOCK, dev: Path = Path("/dev")) -> Path:
    """The block device of the GPT partition named ``name`` (``PARTNAME`` in its uevent)."""
    for uevent in sorted(sys_block.glob("*/uevent")):
        fields = dict(line.split("=", 1) for line in uevent.read_text().splitlines() if "=" in line)
        if fields.get("PARTNAME") == name:
            return dev / fields["DEVNAME"]
    raise FileNotFoundError(f"no partition named {name}")


def parse_before(text: str) -> bs.BootState:
    """``A <prio> <tries> <succ> B <prio> <tries> <succ>`` (EDEN_BOOTSTATE_BEFORE) as a BootState."""
    parts = text.split()
    if len(parts) != 8 or parts[0] != "A" or parts[4] != "B" or not all(p.isdigit() for p in parts[1:4] + parts[5:]):
        raise ValueError(f"bad EDEN_BOOTSTATE_BEFORE {text!r} (want 'A prio tries succ B prio tries succ')")
    n = [int(p) for p in parts[1:4] + parts[5:]]
    return bs.BootState(a=bs.Slot(*n[:3]), b=bs.Slot(*n[3:]))


@dataclass(frozen=True)
class GuestBoot:
    """What the boot stage booted: the slot, the boot-state device and the record before its choice.

    ``before`` is the boot-state record as the boot stage read it, before this boot's selection
    spent a try (``EDEN_BOOTSTATE_BEFORE``): replaying ``bootstate.select_next`` on it must give
    ``slot``. None when the boot stage did not write it (an older image).
    """

    slot: str
    bootstate_dev: Path
    before: bs.BootState | None = None

    @classmethod
    def load(cls, env: Path = BOOT_ENV) -> "GuestBoot":
        """Parse boot.env (shell assignments, values optionally in double quotes); ValueError if malformed."""
        fields = {}
        for line in env.read_text().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                fields[key.strip()] = value.strip().removeprefix('"').removesuffix('"')
        try:
            slot, dev = fields["EDEN_SLOT"], Path(fields["EDEN_BOOTSTATE_DEV"])
        except KeyError as exc:
            raise ValueError(f"{env}: no {exc.args[0]}") from None
        raw = fields.get("EDEN_BOOTSTATE_BEFORE", "")
        return cls(slot, dev, parse_before(raw) if raw else None)

    @property
    def other(self) -> str:
        return bs.other(self.slot)

    def state(self) -> bs.BootState:
        return bs.read(self.bootstate_dev)

    def commit(self) -> bs.BootState:
        """MarkCurrentPartitionStateActive (spec §3 step 6)."""
        new = bs.mark_current_active(self.state(), self.slot)
        bs.write(self.bootstate_dev, new)
        return new

    def install_other(self, slot_image: Path, sys_block: Path = SYS_BLOCK, dev: Path = Path("/dev")) -> bs.BootState:
        """Write a root filesystem slot (ext4 + verity descriptor + tree) into the other partition,
        read it back, then mark it ``updating`` (spec §3 step 2). ValueError if it is no slot or
        does not fit; the other partition is ``unused`` while it is being written."""
        read_descriptor(slot_image)  # refuse anything that is not a slot
        target = partition_device(f"IMG{self.other}", sys_block, dev)
        size = slot_image.stat().st_size
        with open(target, "rb") as f:
            capacity = f.seek(0, os.SEEK_END)
        if size > capacity:
            raise ValueError(f"slot image of {size} bytes does not fit {target} ({capacity} bytes)")
        bs.write(self.bootstate_dev, self.state().with_slot(self.other, bs.UNUSED))
        fd = os.open(target, os.O_WRONLY)
        try:
            with open(slot_image, "rb") as src:
                pos = 0
                while chunk := src.read(256 * BLOCK):
                    os.pwrite(fd, chunk, pos)
                    pos += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        if read_descriptor(target) != read_descriptor(slot_image):
            raise ValueError(f"read-back mismatch on {target}: the other partition stays unused")
        new = bs.set_updating(self.state(), self.other)
        bs.write(self.bootstate_dev, new)
        return new


def main(argv: list[str] | None = None) -> int:
    """``python -m eden.image.guest show|commit|install SLOT_IMAGE`` inside the reference image."""
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="python -m eden.image.guest", description="A/B boot state of this device")
    p.add_argument("action", choices=("show", "commit", "install"))
    p.add_argument("image", nargs="?", type=Path, help="install: a root filesystem slot image")
    args = p.parse_args(argv)
    try:
        boot = GuestBoot.load()
        if args.action == "commit":
            boot.commit()
        elif args.action == "install":
            if args.image is None:
                p.error("install needs SLOT_IMAGE")
            boot.install_other(args.image)
        print(json.dumps({"booted": boot.slot, "state": boot.state().to_json()}, sort_keys=True))
        return 0
    except (OSError, ValueError, KeyError) as exc:
        print(f"eden.image.guest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
