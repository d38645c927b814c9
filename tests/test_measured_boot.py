"""Measured boot PCR extends (spec §1, §5)."""

from __future__ import annotations

import hashlib

import pytest

from eve.measured_boot import (
    QUOTE_PCRS,
    SEAL_PCRS,
    PcrBank,
    expected_pcrs,
    measure_boot,
    mismatching_pcrs,
    seal_digest,
)

BOOT = dict(firmware="uefi-1.2", rootfs="eve-13.4.0", grub_cfg="grub-v1", config="cfg-1")


def boot(**over: object) -> PcrBank:
    bank = PcrBank()
    measure_boot(bank, **{**BOOT, **over})  # type: ignore[arg-type]
    return bank


def changed(a: PcrBank, b: PcrBank) -> set[int]:
    return {i for i in range(24) if a.value(i) != b.value(i)}


def test_extend_formula() -> None:
    bank = PcrBank()
    assert bank.value(3) == bytes(32)
    bank.extend(3, b"hello", "test")
    expected = hashlib.sha256(bytes(32) + hashlib.sha256(b"hello").digest()).digest()
    assert bank.value(3) == expected
    assert bank.event_log[-1] == (3, hashlib.sha256(b"hello").hexdigest(), "test")
    bank.reset()
    assert bank.value(3) == bytes(32) and bank.event_log == []
    with pytest.raises(IndexError):
        bank.extend(24, b"x")


def test_deterministic() -> None:
    a, b = boot(), boot()
    assert a.values() == b.values()
    assert a.quote_digest() == b.quote_digest()
    assert a.values(QUOTE_PCRS) == expected_pcrs(**BOOT)


def test_measured_pcrs() -> None:
    a = boot()
    touched = {e.pcr for e in a.event_log}
    assert touched == set(range(8)) | {8, 13, 14}
    assert a.value(15) == bytes(32)


def test_rootfs_change() -> None:
    a, b = boot(), boot(rootfs="eve-14.0.0")
    assert changed(a, b) == {13}
    assert a.quote_digest() != b.quote_digest()
    assert seal_digest(a.values()) != seal_digest(b.values())
    assert mismatching_pcrs(b.values(), a.values()) == [13]


def test_firmware_change_and_tamper() -> None:
    a = boot()
    assert changed(a, boot(firmware="uefi-1.3")) == set(range(8))
    tampered = boot(firmware_tamper="evil-dxe")
    assert changed(a, tampered) == {0}
    assert a.quote_digest() != tampered.quote_digest()
    assert changed(a, boot(tamper={5: "x"})) == {5}
    # PCR 5 is not sealed (spec §5) so the vault still unseals
    assert seal_digest(a.values()) == seal_digest(boot(tamper={5: "x"}).values())


def test_grub_and_config_change() -> None:
    a = boot()
    assert changed(a, boot(grub_cfg="grub-v2")) == {8}
    assert changed(a, boot(config="cfg-2")) == {14}


def test_constants_and_digests() -> None:
    assert SEAL_PCRS == (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14)
    assert QUOTE_PCRS == tuple(range(16))
    a = boot()
    manual = hashlib.sha256(b"".join(a.value(i) for i in range(16))).digest()
    assert a.quote_digest() == manual
    assert a.quote_digest(iter(range(16))) == manual
    assert seal_digest(a.values()) == hashlib.sha256(b"".join(a.value(i) for i in SEAL_PCRS)).digest()
