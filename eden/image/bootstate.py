"""The boot-state partition: EVE's A/B GPT attributes in a small, documented format (spec §3).

EVE keeps ``priority`` / ``tries`` / ``successful`` of IMGA and IMGB in GPT partition attributes
and GRUB's ``gptprio.next`` picks the partition to boot. The reference image keeps the same three
values in a partition of their own (BOOTSTATE), so that a busybox shell script in the initramfs can
read and write them (``scripts/image-bootstate.sh`` implements the same rules; tests run both on
the same files).

On-disk format, version 1: sector 0 holds the primary record, sector 1 a backup copy; each record is
512 bytes of ASCII padded with NUL bytes::

    EDEN-BOOTSTATE 1
    A <priority> <tries> <successful>
    B <priority> <tries> <successful>
    sha256 <hex sha256 of the three lines above, newlines included>

Numbers are decimal; priority and tries are 0..15 and successful is 0 or 1 (the GPT attribute
nibbles: ``attr = priority | tries << 4 | successful << 8``, so ``active`` is 0x102). A writer
writes the backup first, then the primary; a reader takes the primary when its checksum holds,
else the backup, so a write torn by a power cut leaves one valid copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

__all__ = [
    "SLOTS",
    "RECORD_SIZE",
    "Slot",
    "BootState",
    "ACTIVE",
    "UPDATING",
    "INPROGRESS",
    "UNUSED",
    "FACTORY",
    "BootStateError",
    "encode",
    "decode",
    "read",
    "write",
    "select_next",
    "mark_current_active",
    "set_updating",
]

SLOTS: tuple[str, str] = ("A", "B")  # tie-break order: A first, as IMGA in zboot
RECORD_SIZE = 512
MAGIC = "EDEN-BOOTSTATE 1"


class BootStateError(ValueError):
    """The boot-state record is missing, corrupt or holds an impossible value."""


@dataclass(frozen=True)
class Slot:
    """One root filesystem's attributes (spec §3 table)."""

    priority: int
    tries: int
    successful: int

    def __post_init__(self) -> None:
        if not (0 <= self.priority <= 15 and 0 <= self.tries <= 15 and self.successful in (0, 1)):
            raise BootStateError(f"slot attributes out of range: {self}")

    @property
    def attr(self) -> int:
        """The EVE GPT attribute value (bits 48.. of the GPT entry), e.g. 0x102 for active."""
        return self.priority | self.tries << 4 | self.successful << 8

    @property
    def bootable(self) -> bool:
        """``gptprio.next`` may boot it: ``tries > 0 || successful`` (spec §3)."""
        return self.tries > 0 or self.successful == 1

    def state_name(self) -> str:
        """active / updating / inprogress / unused, or ``attr=0x..`` for other combinations."""
        for name, slot in _NAMED.items():
            if slot == self:
                return name
        return f"attr={self.attr:#x}"


ACTIVE = Slot(2, 0, 1)
UPDATING = Slot(3, 1, 0)
INPROGRESS = Slot(3, 0, 0)
UNUSED = Slot(0, 0, 0)
_NAMED = {"active": ACTIVE, "updating": UPDATING, "inprogress": INPROGRESS, "unused": UNUSED}


@dataclass(frozen=True)
class BootState:
    """Both slots' attributes."""

    a: Slot
    b: Slot

    def __getitem__(self, slot: str) -> Slot:
        return {"A": self.a, "B": self.b}[_check_slot(slot)]

    def with_slot(self, slot: str, value: Slot) -> "BootState":
        return replace(self, a=value) if _check_slot(slot) == "A" else replace(self, b=value)

    def to_json(self) -> dict[str, dict[str, object]]:
        return {
            s: {"priority": self[s].priority, "tries": self[s].tries, "successful": self[s].successful,
                "attr": hex(self[s].attr), "state": self[s].state_name()}
            for s in SLOTS
        }


FACTORY = BootState(a=ACTIVE, b=UNUSED)  # a factory-installed device: A active, B unused


def _check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise BootStateError(f"unknown slot {slot!r} (A or B)")
    return slot


# ------------------------------------------------------------------------------------ encoding --
def _body(state: BootState) -> str:
    lines = [MAGIC] + [f"{s} {state[s].priority} {state[s].tries} {state[s].successful}" for s in SLOTS]
    return "".join(line + "\n" for line in lines)


def encode(state: BootState) -> bytes:
    """One 512-byte record."""
    body = _body(state)
    text = body + f"sha256 {hashlib.sha256(body.encode()).hexdigest()}\n"
    return text.encode().ljust(RECORD_SIZE, b"\0")


def decode(record: bytes) -> BootState:
    """Parse one record; BootStateError when it is not a valid version-1 record."""
    text = record.rstrip(b"\0").decode("ascii", errors="replace")
    lines = text.split("\n")
    if len(lines) < 5 or lines[0] != MAGIC or lines[4] != "":
        raise BootStateError("not an EDEN-BOOTSTATE 1 record")
    body = "".join(line + "\n" for line in lines[:3])
    if lines[3] != f"sha256 {hashlib.sha256(body.encode()).hexdigest()}":
        raise BootStateError("boot-state checksum mismatch")
    slots: dict[str, Slot] = {}
    for want, line in zip(SLOTS, lines[1:3]):
        parts = line.split(" ")
        if len(parts) != 4 or parts[0] != want or not all(p.isdigit() for p in parts[1:]):
            raise BootStateError(f"bad slot line {line!r}")
        slots[want] = Slot(int(parts[1]), int(parts[2]), int(parts[3]))
    return BootState(a=slots["A"], b=slots["B"])


def read(path: str | os.PathLike[str], offset: int = 0) -> BootState:
    """Read the partition (or a file, or a disk image at byte ``offset``): primary, else backup."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(2 * RECORD_SIZE)
    errors: list[str] = []
    for i in range(2):
        try:
            return decode(data[i * RECORD_SIZE:(i + 1) * RECORD_SIZE])
        except BootStateError as exc:
            errors.append(f"{('primary', 'backup')[i]}: {exc}")
    raise BootStateError(f"{path}: no valid boot-state record ({'; '.join(errors)})")


def write(path: str | os.PathLike[str], state: BootState, offset: int = 0) -> None:
    """Write backup then primary, each synced to the device before the next."""
    record = encode(state)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for sector in (1, 0):
            os.pwrite(fd, record, offset + sector * RECORD_SIZE)
            os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- rules --
def select_next(state: BootState) -> tuple[str | None, BootState]:
    """GRUB ``gptprio.next`` (spec §3, as ``eve.zboot.Zboot.select_boot``).

    The bootable slot with the highest priority wins, A on a tie; its tries are decremented. None
    when nothing is bootable (the state is returned unchanged).
    """
    best: str | None = None
    for slot in SLOTS:
        if state[slot].bootable and (best is None or state[slot].priority > state[best].priority):
            best = slot
    if best is None:
        return None, state
    chosen = state[best]
    if chosen.tries > 0:
        state = state.with_slot(best, replace(chosen, tries=chosen.tries - 1))
    return best, state


def other(slot: str) -> str:
    return "B" if _check_slot(slot) == "A" else "A"


def mark_current_active(state: BootState, current: str) -> BootState:
    """The agent commits the booted slot: current=active, an active other becomes unused (spec §3 step 6)."""
    new = state.with_slot(current, ACTIVE)
    if new[other(current)] == ACTIVE:
        new = new.with_slot(other(current), UNUSED)
    return new


def set_updating(state: BootState, slot: str) -> BootState:
    """Give ``slot`` exactly one try at the next boot (spec §3 step 2; also force fallback)."""
    return state.with_slot(slot, UPDATING)


# ----------------------------------------------------------------------------------------- CLI --
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eden.image.bootstate DEVICE show|next|commit SLOT|set-updating SLOT|init``."""
    p = argparse.ArgumentParser(prog="python -m eden.image.bootstate", description=__doc__.split("\n")[0])
    p.add_argument("device", type=Path, help="the BOOTSTATE partition (or a file holding one)")
    p.add_argument("action", choices=("show", "next", "commit", "set-updating", "init"))
    p.add_argument("slot", nargs="?", choices=SLOTS)
    args = p.parse_args(argv)
    try:
        if args.action == "init":
            write(args.device, FACTORY)
            return 0
        state = read(args.device)
        if args.action == "show":
            print(json.dumps(state.to_json(), sort_keys=True))
            return 0
        if args.action == "next":
            slot, state = select_next(state)
            if slot is None:
                print("no bootable slot", file=sys.stderr)
                return 1
            write(args.device, state)
            print(slot)
            return 0
        if args.slot is None:
            p.error(f"{args.action} needs SLOT")
        state = mark_current_active(state, args.slot) if args.action == "commit" else set_updating(state, args.slot)
        write(args.device, state)
        return 0
    except (OSError, BootStateError) as exc:
        print(f"bootstate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
