"""A/B baseOS partitions: zboot GPT attributes and GRUB gptprio (spec §3).

A plain data structure with no timers: the device model decides when to
write, mark and reboot; this module only encodes which partition boots and
how partition states change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eve.enums import PartitionState

__all__ = [
    "LABELS",
    "STATE_ATTRS",
    "REFUSE_TOO_EARLY",
    "REFUSE_KNOWN_FAILED",
    "Partition",
    "Zboot",
]

LABELS: tuple[str, str] = ("IMGA", "IMGB")  # tie-break order: IMGA first

# state -> (GPT attr, priority, tries, successful)  (spec §3 table)
STATE_ATTRS: dict[PartitionState, tuple[int, int, int, int]] = {
    PartitionState.ACTIVE: (0x102, 2, 0, 1),
    PartitionState.UPDATING: (0x13, 3, 1, 0),
    PartitionState.INPROGRESS: (0x3, 3, 0, 0),
    PartitionState.UNUSED: (0x0, 0, 0, 0),
}

# Refusal reasons for installing into the other partition (spec §3 step 2).
REFUSE_TOO_EARLY = "TooEarly"
REFUSE_KNOWN_FAILED = "known failed"


@dataclass
class Partition:
    """One baseOS partition (IMGA or IMGB) with its zboot state."""

    label: str
    version: str | None = None
    image_id: str | None = None  # opaque image name
    state: PartitionState = PartitionState.UNUSED

    @property
    def attr(self) -> int:
        """GPT attribute value for the current state (spec §3)."""
        return STATE_ATTRS[self.state][0]

    @property
    def priority(self) -> int:
        return STATE_ATTRS[self.state][1]

    @property
    def tries(self) -> int:
        return STATE_ATTRS[self.state][2]

    @property
    def successful(self) -> int:
        return STATE_ATTRS[self.state][3]

    @property
    def bootable(self) -> bool:
        """GRUB may boot it: ``tries > 0 || successful`` (spec §3)."""
        return self.tries > 0 or bool(self.successful)

    def snapshot(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "version": self.version,
            "image_id": self.image_id,
            "state": self.state.value,
            "attr": hex(self.attr),
        }


class Zboot:
    """Two partitions plus the label booted now (``current``)."""

    def __init__(
        self,
        partitions: dict[str, Partition] | None = None,
        current: str | None = None,
    ) -> None:
        self.partitions: dict[str, Partition] = partitions or {
            label: Partition(label) for label in LABELS
        }
        if set(self.partitions) != set(LABELS):
            raise ValueError(f"partitions must be exactly {LABELS}")
        if current is not None and current not in LABELS:
            raise ValueError(f"unknown partition label {current!r}")
        self.current = current

    @classmethod
    def fresh(cls, version: str, image_id: str | None = None, label: str = "IMGA") -> "Zboot":
        """A factory-installed device: ``label`` active with ``version``, other unused, not booted."""
        zb = cls()
        zb.partitions[label] = Partition(label, version, image_id, PartitionState.ACTIVE)
        return zb

    # --- lookups -----------------------------------------------------------

    @staticmethod
    def other_label(label: str) -> str:
        """The partition label that is not ``label``."""
        if label == "IMGA":
            return "IMGB"
        if label == "IMGB":
            return "IMGA"
        raise ValueError(f"unknown partition label {label!r}")

    def __getitem__(self, label: str) -> Partition:
        return self.partitions[label]

    def _current(self) -> Partition:
        if self.current is None:
            raise RuntimeError("no partition booted")
        return self.partitions[self.current]

    @property
    def current_partition(self) -> Partition:
        """The booted partition; RuntimeError when not booted."""
        return self._current()

    @property
    def other_partition(self) -> Partition:
        """The partition that is not booted; RuntimeError when not booted."""
        return self.partitions[self.other_label(self._current().label)]

    def attr(self, label: str) -> int:
        """GPT attribute value of ``label`` (spec §3)."""
        return self.partitions[label].attr

    def bootable(self) -> bool:
        """True when GRUB can boot at least one partition."""
        return any(p.bootable for p in self.partitions.values())

    # --- boot ---------------------------------------------------------------

    def select_boot(self) -> str | None:
        """GRUB gptprio.next: pick and boot a partition, or None if bricked.

        Highest priority among bootable partitions, IMGA first on a tie; the
        picked partition's tries are decremented, so ``updating`` becomes
        ``inprogress`` and a new image gets exactly one boot (spec §3).
        """
        best: Partition | None = None
        for label in LABELS:
            part = self.partitions[label]
            if part.bootable and (best is None or part.priority > best.priority):
                best = part
        if best is None:
            self.current = None
            return None
        if best.tries > 0:
            # tries 1 -> 0 turns 0x13 (updating) into 0x3 (inprogress).
            best.state = PartitionState.INPROGRESS
        self.current = best.label
        return best.label

    # --- baseosmgr / nodeagent operations ----------------------------------

    def refuse_reason(self, version: str) -> str | None:
        """Why installing ``version`` into the other partition is refused, else None (spec §3)."""
        cur = self._current()
        other = self.other_partition
        if cur.state == PartitionState.INPROGRESS or other.state == PartitionState.ACTIVE:
            return REFUSE_TOO_EARLY
        if other.state == PartitionState.INPROGRESS and other.version == version:
            return REFUSE_KNOWN_FAILED
        return None

    def write_other(self, version: str | None, image_id: str | None = None) -> Partition:
        """dd an image into the other partition: it becomes ``unused`` with the new version.

        The caller then calls :meth:`set_updating` (spec §3 step 2); passing
        ``version=None`` models a read-back mismatch leaving no usable version.
        """
        other = self.other_partition
        other.version = version
        other.image_id = image_id
        other.state = PartitionState.UNUSED
        return other

    def set_updating(self, label: str) -> None:
        """Mark ``label`` updating so the next boot tries it once (spec §3)."""
        part = self.partitions[label]
        if part.version is None:
            raise ValueError(f"{label} holds no image")
        part.state = PartitionState.UPDATING

    def mark_current_active(self) -> None:
        """MarkCurrentPartitionStateActive: current=active; an active other -> unused (spec §3 step 6)."""
        cur = self._current()
        other = self.other_partition
        cur.state = PartitionState.ACTIVE
        if other.state == PartitionState.ACTIVE:
            other.state = PartitionState.UNUSED

    def can_retry(self, version: str) -> bool:
        """Retry precondition: current active, other inprogress with ``version`` (spec §3)."""
        cur = self._current()
        other = self.other_partition
        return (
            cur.state == PartitionState.ACTIVE
            and other.state == PartitionState.INPROGRESS
            and other.version == version
        )

    def can_force_fallback(self) -> bool:
        """force.fallback.counter precondition: current active, other unused with a version (spec §3)."""
        cur = self._current()
        other = self.other_partition
        return (
            cur.state == PartitionState.ACTIVE
            and other.state == PartitionState.UNUSED
            and other.version is not None
        )

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly view for reports."""
        return {
            "current": self.current,
            "partitions": {label: self.partitions[label].snapshot() for label in LABELS},
        }
