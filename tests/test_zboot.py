"""A/B partition logic (spec §3)."""

from __future__ import annotations

import pytest

from eve.enums import PartitionState as PS
from eve.zboot import REFUSE_KNOWN_FAILED, REFUSE_TOO_EARLY, Partition, Zboot


def booted(version: str = "1.0") -> Zboot:
    zb = Zboot.fresh(version, "img-1.0")
    assert zb.select_boot() == "IMGA"
    return zb


def test_state_attribute_table() -> None:  # spec §3
    rows = {s: (Partition("IMGA", state=s).attr, Partition("IMGA", state=s).priority,
                Partition("IMGA", state=s).tries, Partition("IMGA", state=s).successful)
            for s in PS}
    assert rows == {PS.ACTIVE: (0x102, 2, 0, 1), PS.UPDATING: (0x13, 3, 1, 0),
                    PS.INPROGRESS: (0x3, 3, 0, 0), PS.UNUSED: (0, 0, 0, 0)}


def test_new_image_gets_exactly_one_boot() -> None:
    zb = booted()
    assert zb.refuse_reason("2.0") is None
    zb.write_other("2.0", "img-2.0")
    assert zb["IMGB"].state == PS.UNUSED and zb["IMGB"].version == "2.0"
    zb.set_updating("IMGB")
    assert zb.attr("IMGB") == 0x13
    assert zb.select_boot() == "IMGB"  # picked once
    assert zb["IMGB"].state == PS.INPROGRESS and zb.attr("IMGB") == 0x3
    assert zb.select_boot() == "IMGA"  # any reboot before commit -> old image
    assert zb.current_partition.version == "1.0"


def test_commit() -> None:
    zb = booted()
    zb.write_other("2.0", "img-2.0")
    zb.set_updating("IMGB")
    zb.select_boot()
    zb.mark_current_active()
    assert (zb["IMGB"].state, zb["IMGA"].state) == (PS.ACTIVE, PS.UNUSED)
    assert zb.select_boot() == "IMGB"
    snap = zb.snapshot()
    assert snap["current"] == "IMGB"
    assert snap["partitions"]["IMGB"] == {"label": "IMGB", "version": "2.0",
                                          "image_id": "img-2.0", "state": "active", "attr": "0x102"}


def test_force_fallback_path() -> None:
    zb = booted()
    zb.write_other("2.0", "img-2.0")
    zb.set_updating("IMGB")
    zb.select_boot()
    zb.mark_current_active()  # running 2.0 on IMGB, IMGA unused holding 1.0
    assert zb.can_force_fallback()
    zb.set_updating("IMGA")
    assert zb.select_boot() == "IMGA"
    assert zb.current_partition.version == "1.0" and zb["IMGA"].state == PS.INPROGRESS
    zb.mark_current_active()
    assert (zb["IMGA"].state, zb["IMGB"].state) == (PS.ACTIVE, PS.UNUSED)
    # both old and new present: fresh device has no version in other -> no force fallback
    assert not booted().can_force_fallback()


def test_retry_after_failed_update() -> None:
    zb = booted()
    zb.write_other("2.0", "img-2.0")
    zb.set_updating("IMGB")
    zb.select_boot()
    zb.select_boot()  # fell back to IMGA
    assert zb.can_retry("2.0") and not zb.can_retry("3.0")
    zb.set_updating("IMGB")
    assert zb.select_boot() == "IMGB"


def test_brick_when_nothing_bootable() -> None:
    zb = Zboot()
    assert not zb.bootable()
    assert zb.select_boot() is None and zb.current is None
    zb = Zboot({"IMGA": Partition("IMGA", "1", None, PS.INPROGRESS),
                "IMGB": Partition("IMGB", "2", None, PS.UNUSED)})
    assert zb.select_boot() is None


def test_tie_prefers_imga() -> None:
    zb = Zboot({"IMGA": Partition("IMGA", "1", None, PS.ACTIVE),
                "IMGB": Partition("IMGB", "2", None, PS.ACTIVE)})
    assert zb.select_boot() == "IMGA"


def test_refusals() -> None:
    zb = booted()
    zb.write_other("2.0", "img-2.0")
    zb.set_updating("IMGB")
    zb.select_boot()
    assert zb.refuse_reason("3.0") == REFUSE_TOO_EARLY  # current inprogress
    zb.select_boot()  # fallback to IMGA; IMGB inprogress with 2.0
    assert zb.refuse_reason("2.0") == REFUSE_KNOWN_FAILED
    assert zb.refuse_reason("3.0") is None
    zb2 = Zboot({"IMGA": Partition("IMGA", "1", None, PS.ACTIVE),
                 "IMGB": Partition("IMGB", "2", None, PS.ACTIVE)}, current="IMGA")
    assert zb2.refuse_reason("3") == REFUSE_TOO_EARLY  # other active


def test_misc_errors() -> None:
    assert Zboot.other_label("IMGA") == "IMGB" and Zboot.other_label("IMGB") == "IMGA"
    with pytest.raises(ValueError):
        Zboot.other_label("IMGC")
    with pytest.raises(RuntimeError):
        Zboot().refuse_reason("1")
    with pytest.raises(ValueError):
        booted().set_updating("IMGB")  # holds no image
