"""The device's TPM behind a small interface (§5).

The node model measures each boot itself (``Node.pcrs``, from ``simulator.eve.measured_boot``) and
quotes those values; :class:`SoftTpm` is that PCR bank as the agent's TPM when the host has none.
:class:`Tpm2Tools` reads a real TPM through ``tpm2_pcrread`` (a QEMU guest with swtpm, or
hardware); the agent reports which one it has. Using a real TPM's values in the quote is future
work (the node would need the TPM's PCRs as an input).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Mapping, Protocol

from simulator.eve.measured_boot import QUOTE_PCRS


class Tpm(Protocol):
    kind: str

    def measured(self, pcrs: Mapping[int, bytes]) -> None:
        """The node measured a boot into these values."""

    def read(self) -> dict[int, bytes]:
        """PCR 0-15 (SHA-256) as the TPM holds them now."""


class SoftTpm:
    kind = "soft"

    def __init__(self) -> None:
        self._pcrs: dict[int, bytes] = {}

    def measured(self, pcrs: Mapping[int, bytes]) -> None:
        self._pcrs = {i: pcrs[i] for i in QUOTE_PCRS if i in pcrs}

    def read(self) -> dict[int, bytes]:
        return dict(self._pcrs)


class Tpm2Tools:
    kind = "tpm2-tools"
    _LINE = re.compile(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$")

    def measured(self, pcrs: Mapping[int, bytes]) -> None:
        pass  # a real TPM was extended by the real firmware and bootloader

    def read(self) -> dict[int, bytes]:
        sel = "sha256:" + ",".join(str(i) for i in QUOTE_PCRS)
        out = subprocess.run(["tpm2_pcrread", sel], check=True, capture_output=True, text=True, timeout=30).stdout
        return {int(m[1]): bytes.fromhex(m[2]) for line in out.splitlines() if (m := self._LINE.match(line))}


def detect_tpm() -> Tpm:
    """A real TPM when the resource manager device and tpm2-tools are there, else the soft one."""
    if os.path.exists("/dev/tpmrm0") and shutil.which("tpm2_pcrread"):
        return Tpm2Tools()
    return SoftTpm()
