"""TPM 2.0 structures of a quote (TPM 2.0 Library Part 2): TPMS_ATTEST and TPMT_SIGNATURE.

EVE's tpmmgr sends the TPM's ``attestData`` (a marshalled TPMS_ATTEST) as is and the ECDSA
signature as ASN.1 DER (``getQuote``, P:cmd/tpmmgr/tpmmgr.go; spec §5). The parser is strict:
every length is bounded by the buffer, unknown structure tags and trailing bytes are errors, so a
malformed quote can only fail (:class:`TpmsError`), never be read half-way.

``build_quote`` produces the same bytes a TPM does, for the agent's software TPM.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

TPM_GENERATED_VALUE = 0xFF544347  # "\xffTCG"
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_SHA256 = 0x000B
TPM_ALG_ECDSA = 0x0018
MAX_ATTEST = 1024  # a quote over a few PCR banks is ~150 bytes; anything far bigger is hostile
PCR_SELECT_MAX = 4  # bytes of a PCR bitmap (TPM 2.0 PCR_SELECT_MAX for 24..32 PCRs)
MAX_BANKS = 16


class TpmsError(ValueError):
    """The bytes are not a well-formed structure; ``field`` names the one at fault."""

    def __init__(self, message: str, field: str = "attestData") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class QuoteInfo:
    """The fields of a TPMS_ATTEST of type QUOTE that a verifier checks."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: int
    firmware_version: int
    selection: tuple[tuple[int, tuple[int, ...]], ...]  # (hash alg, sorted PCR indices) per bank
    pcr_digest: bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise TpmsError(f"{what}: truncated at byte {self.at}")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def tpm2b(self, what: str, limit: int) -> bytes:
        n = self.uint(2, f"{what} size")
        if n > limit:
            raise TpmsError(f"{what}: size {n} exceeds {limit}")
        return self.take(n, what)

    def end(self) -> None:
        if self.at != len(self.data):
            raise TpmsError(f"{len(self.data) - self.at} trailing bytes after the structure")


def parse_quote(data: bytes) -> QuoteInfo:
    """A TPMS_ATTEST; only its layout is checked here, not what the values mean."""
    if len(data) > MAX_ATTEST:
        raise TpmsError(f"attestData is {len(data)} bytes, more than {MAX_ATTEST}")
    r = _Reader(data)
    magic = r.uint(4, "magic")
    st = r.uint(2, "type")
    if st != TPM_ST_ATTEST_QUOTE:  # the layout after clockInfo differs per type
        raise TpmsError(f"type 0x{st:04x} is not TPM_ST_ATTEST_QUOTE", "type")
    signer = r.tpm2b("qualifiedSigner", 68)  # TPM2B_NAME: alg + the largest digest
    extra = r.tpm2b("extraData", 64)
    clock, reset, restart = r.uint(8, "clock"), r.uint(4, "resetCount"), r.uint(4, "restartCount")
    safe = r.uint(1, "safe")
    firmware = r.uint(8, "firmwareVersion")
    banks = r.uint(4, "pcrSelect count")
    if banks > MAX_BANKS:
        raise TpmsError(f"pcrSelect count {banks} exceeds {MAX_BANKS}")
    selection = []
    for _ in range(banks):
        alg = r.uint(2, "pcrSelect hash")
        size = r.uint(1, "sizeofSelect")
        if size > PCR_SELECT_MAX:
            raise TpmsError(f"sizeofSelect {size} exceeds {PCR_SELECT_MAX}")
        bitmap = r.take(size, "pcrSelect")
        selection.append((alg, tuple(i for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1)))
    digest = r.tpm2b("pcrDigest", 64)
    r.end()
    return QuoteInfo(magic, st, signer, extra, clock, reset, restart, safe, firmware, tuple(selection), digest)


def pcr_composite_digest(values: Mapping[int, bytes], indices: Sequence[int]) -> bytes:
    """sha256 over the selected PCR values in ascending index order (TPM2_Quote's pcrDigest)."""
    return hashlib.sha256(b"".join(values[i] for i in sorted(indices))).digest()


def build_quote(extra_data: bytes, values: Mapping[int, bytes], indices: Sequence[int], *,
                signer_name: bytes = b"", clock: int = 0, firmware: int = 0) -> bytes:
    """A TPMS_ATTEST of type QUOTE over SHA-256 PCRs ``indices`` (what a TPM would produce)."""
    bitmap = bytearray(3)
    for i in indices:
        bitmap[i // 8] |= 1 << (i % 8)
    digest = pcr_composite_digest(values, indices)
    return b"".join([
        struct.pack(">IH", TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE),
        struct.pack(">H", len(signer_name)), signer_name,
        struct.pack(">H", len(extra_data)), extra_data,
        struct.pack(">QIIB", clock, 0, 0, 1),
        struct.pack(">Q", firmware),
        struct.pack(">IHB", 1, TPM_ALG_SHA256, len(bitmap)), bytes(bitmap),
        struct.pack(">H", len(digest)), digest,
    ])


def ecdsa_der_from_tpmt(data: bytes) -> bytes:
    """A TPMT_SIGNATURE (ECDSA, SHA-256; what ``tpm2_quote -s`` writes) as the ASN.1 DER EVE sends."""
    r = _Reader(data)
    alg, hash_alg = r.uint(2, "sigAlg"), r.uint(2, "hash")
    if alg != TPM_ALG_ECDSA or hash_alg != TPM_ALG_SHA256:
        raise TpmsError(f"signature scheme 0x{alg:04x}/0x{hash_alg:04x} is not ECDSA-SHA256")
    sig_r = r.tpm2b("signatureR", 66)
    sig_s = r.tpm2b("signatureS", 66)
    r.end()
    return encode_dss_signature(int.from_bytes(sig_r, "big"), int.from_bytes(sig_s, "big"))
