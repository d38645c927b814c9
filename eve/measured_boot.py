"""Measured boot with real SHA-256 PCR extends (spec §1, §5).

Component identities are strings; their measurement is the SHA-256 of a
string derived from the identity, so identical inputs give identical PCRs
and any change shows up in the PCR that measured it.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping, NamedTuple

__all__ = [
    "NUM_PCRS",
    "DIGEST_SIZE",
    "SEAL_PCRS",
    "QUOTE_PCRS",
    "REPORTED_PCRS",
    "RESET_VALUES_16_23",
    "PCR_GRUB_CFG",
    "PCR_ROOTFS",
    "PCR_CONFIG",
    "FIRMWARE_PCRS",
    "PcrEvent",
    "PcrBank",
    "measure_boot",
    "expected_pcrs",
    "pcr_digest",
    "seal_digest",
    "mismatching_pcrs",
]

NUM_PCRS = 24
DIGEST_SIZE = 32  # SHA-256

FIRMWARE_PCRS: tuple[int, ...] = tuple(range(8))  # firmware measures PCR 0-7 (spec §1)
PCR_GRUB_CFG = 8  # stage-2 GRUB measures grub.cfg (spec §1)
PCR_ROOTFS = 13  # stage-2 GRUB measures rootfs (spec §1)
PCR_CONFIG = 14  # measure-config extends /config (spec §1; also remote-access status, spec §5)

# Vault key sealing PCRs: 0-14 without 5 (spec §5, P:evetpm/tpm.go).
SEAL_PCRS: tuple[int, ...] = (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14)
# Attestation quote covers SHA-256 PCR 0-15 (spec §5).
QUOTE_PCRS: tuple[int, ...] = tuple(range(16))
# What the device reports beside a quote: tpmmgr reads SHA-256 PCR 0-23 (maxPCRIndex = 23) and sends
# them all in pcr_values, though only 0-15 are quoted (P:cmd/tpmmgr/tpmmgr.go getQuote; spec §5).
REPORTED_PCRS: tuple[int, ...] = tuple(range(24))
# PCR 16-23 as a TPM 2.0 PC-client TPM holds them after a reset: 17-22 all ones, 16 and 23 zero.
RESET_VALUES_16_23: dict[int, bytes] = {i: (b"\xff" if 17 <= i <= 22 else b"\x00") * 32 for i in range(16, 24)}


def _bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


class PcrEvent(NamedTuple):
    """One event-log entry: PCR index, hex event digest, description."""

    pcr: int
    digest_hex: str
    description: str


class PcrBank:
    """24 SHA-256 PCRs plus an event log.

    Simplification: every PCR resets to 32 zero bytes. Real TPMs reset the
    locality PCRs 17-22 to 0xff..ff; nothing here depends on those PCRs.
    """

    def __init__(self) -> None:
        self.pcrs: list[bytes] = [bytes(DIGEST_SIZE)] * NUM_PCRS
        self.event_log: list[PcrEvent] = []

    def reset(self) -> None:
        """Power-cycle reset: all PCRs zero, empty event log."""
        self.pcrs = [bytes(DIGEST_SIZE)] * NUM_PCRS
        self.event_log = []

    def extend(self, index: int, data: bytes | str, description: str = "") -> bytes:
        """Extend PCR ``index`` with ``data``: pcr = sha256(pcr || sha256(data)); return the new value."""
        if not 0 <= index < NUM_PCRS:
            raise IndexError(f"PCR index {index} out of range 0..{NUM_PCRS - 1}")
        digest = hashlib.sha256(_bytes(data)).digest()
        self.pcrs[index] = hashlib.sha256(self.pcrs[index] + digest).digest()
        self.event_log.append(PcrEvent(index, digest.hex(), description))
        return self.pcrs[index]

    def value(self, index: int) -> bytes:
        """Current value of one PCR."""
        return self.pcrs[index]

    def values(self, indices: Iterable[int] = range(NUM_PCRS)) -> dict[int, bytes]:
        """Current values of the selected PCRs."""
        return {i: self.pcrs[i] for i in indices}

    def quote_digest(self, indices: Iterable[int] = QUOTE_PCRS) -> bytes:
        """sha256 over the selected PCR values concatenated in order (spec §5: quote = PCR 0-15)."""
        order = tuple(indices)
        return pcr_digest(self.values(order), order)


def pcr_digest(pcrs: Mapping[int, bytes], indices: Iterable[int]) -> bytes:
    """sha256 over ``pcrs[i]`` for ``i`` in ``indices`` order; KeyError if one is missing."""
    h = hashlib.sha256()
    for i in indices:
        h.update(pcrs[i])
    return h.digest()


def seal_digest(pcrs: Mapping[int, bytes], indices: Iterable[int] = SEAL_PCRS) -> bytes:
    """Policy digest the vault key is sealed to (spec §5 sealing PCRs)."""
    return pcr_digest(pcrs, indices)


def mismatching_pcrs(
    actual: Mapping[int, bytes], expected: Mapping[int, bytes], indices: Iterable[int] = SEAL_PCRS
) -> list[int]:
    """PCR indices whose values differ (VaultInfo lists these, spec §5)."""
    return [i for i in indices if actual.get(i) != expected.get(i)]


def measure_boot(
    bank: PcrBank,
    *,
    firmware: str,
    rootfs: str,
    grub_cfg: str,
    config: str,
    firmware_tamper: str | None = None,
    tamper: Mapping[int, str] | None = None,
) -> dict[int, bytes]:
    """Reset ``bank`` and replay one boot's measurements; return all PCR values.

    Firmware extends PCR 0-7 with per-PCR data derived from its identity;
    stage-2 GRUB extends grub.cfg into PCR 8 and rootfs into PCR 13;
    measure-config extends /config into PCR 14 (spec §1). ``firmware_tamper``
    perturbs PCR 0; ``tamper`` adds an extra extend to any PCR index.
    """
    bank.reset()
    for i in FIRMWARE_PCRS:
        bank.extend(i, f"firmware:{firmware}:pcr{i}", f"firmware {firmware} PCR{i}")
    if firmware_tamper is not None:
        bank.extend(0, f"tamper:{firmware_tamper}", "firmware tamper")
    bank.extend(PCR_GRUB_CFG, f"grub.cfg:{grub_cfg}", "grub.cfg")
    bank.extend(PCR_ROOTFS, f"rootfs:{rootfs}", f"rootfs {rootfs}")
    bank.extend(PCR_CONFIG, f"config:{config}", "/config")
    for index, text in sorted((tamper or {}).items()):
        bank.extend(index, f"tamper:{text}", f"tamper PCR{index}")
    return bank.values()


def expected_pcrs(
    *,
    firmware: str,
    rootfs: str,
    grub_cfg: str,
    config: str,
    indices: Iterable[int] = QUOTE_PCRS,
) -> dict[int, bytes]:
    """PCR values a clean (untampered) boot produces, for approved templates."""
    bank = PcrBank()
    measure_boot(bank, firmware=firmware, rootfs=rootfs, grub_cfg=grub_cfg, config=config)
    return bank.values(indices)
