"""The device's TPM behind a small interface (§5).

The node model measures each boot itself (``Node.pcrs``, from ``eve.measured_boot``) and
quotes those values; :class:`SoftTpm` is that PCR bank as the agent's TPM when the host has none.
:class:`Tpm2Tools` is a real TPM through tpm2-tools (a QEMU guest with swtpm, or hardware); the
agent reports which one it has.

Both quote the way EVE's tpmmgr does (``getQuote``, P:cmd/tpmmgr/tpmmgr.go): an ECC P-256
restricted signing key (the AK, EVE's handle 0x81000004) signs a TPMS_ATTEST over SHA-256 PCR 0-15
with the controller's nonce as qualifying data; the signature travels as ASN.1 DER. The AK's
public key is certified by the device key (``createQuoteCertOnTpm``) and posted, with an ECDH
cert, by ATTEST_REQ_CERT (spec §2.1) before the quote is checked.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eden.wire import pki
from eden.wire.tpms import build_quote, ecdsa_der_from_tpmt
from eve.measured_boot import QUOTE_PCRS, REPORTED_PCRS, RESET_VALUES_16_23

AK_HANDLE = "0x81000004"  # EVE's TpmQuoteKeyHdl (P:evetpm/tpm.go)
EK_HANDLE = "0x81000001"  # EVE's TpmEKHdl
AK_ATTRIBUTES = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda"
"""EVE's DefaultQuoteKeyTemplate (P:evetpm/tpm.go), FlagNoDA included: a TPM that lives through power
cuts (a board's) counts each non-orderly shutdown towards its dictionary-attack lockout, which would
otherwise refuse every quote with a DA-protected key after a few cuts."""


def certify(public_key: Any, device: pki.Issued, common_name: str) -> bytes:
    """A cert for ``public_key`` issued by the device cert, with its lifetime (tpmmgr's template)."""
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(device.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(device.cert.not_valid_before_utc - _dt.timedelta(seconds=1))
            .not_valid_after(device.cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(device.key, hashes.SHA256()))
    return pki.cert_pem(cert)


def _ecdh_cert(device: pki.Issued) -> dict[str, Any]:
    return {"type": "DEVICE_ECDH_EXCHANGE", "pem": certify(pki.new_key().public_key(), device, "Device ECDH certificate")}


class Tpm(Protocol):
    kind: str

    def measured(self, pcrs: Mapping[int, bytes]) -> None:
        """The node measured a boot into these values."""

    def read(self) -> dict[int, bytes]:
        """PCR 0-15 (SHA-256) as the TPM holds them now."""

    def certs(self, device: pki.Issued) -> list[dict[str, Any]]:
        """The certs ATTEST_REQ_CERT posts: [{type, pem}] (the AK's, issued by the device cert)."""

    def quote(self, nonce: bytes) -> dict[str, Any]:
        """{attest: TPMS_ATTEST, signature: DER, pcrs: {index: hex}}: a quote of PCR 0-15 with ``nonce``,
        and PCR 0-23 reported beside it, as EVE's tpmmgr sends them (spec §5)."""


class SoftTpm:
    kind = "soft"

    def __init__(self) -> None:
        self._pcrs: dict[int, bytes] = {}
        self._ak = pki.new_key()  # a new AK per process: its cert is posted at every start

    def certs(self, device: pki.Issued) -> list[dict[str, Any]]:
        ak = {"type": "DEVICE_RESTRICTED_SIGNING", "pem": certify(self._ak.public_key(), device, "Device Attestation certificate")}
        return [ak, _ecdh_cert(device)]

    def quote(self, nonce: bytes) -> dict[str, Any]:
        der = self._ak.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        name = b"\x00\x0b" + hashlib.sha256(der).digest()
        attest = build_quote(nonce, self._pcrs, QUOTE_PCRS, signer_name=name)
        reported = {**self._pcrs, **RESET_VALUES_16_23}
        return {"attest": attest, "signature": self._ak.sign(attest, ec.ECDSA(hashes.SHA256())),
                "pcrs": {str(i): v.hex() for i, v in sorted(reported.items())}}

    def measured(self, pcrs: Mapping[int, bytes]) -> None:
        self._pcrs = {i: pcrs[i] for i in QUOTE_PCRS if i in pcrs}

    def read(self) -> dict[int, bytes]:
        return dict(self._pcrs)


class Tpm2Tools:
    """A real TPM. ``tcti`` (e.g. ``swtpm:port=2321``) selects it; default: tpm2-tools' own choice."""

    kind = "tpm2-tools"
    _LINE = re.compile(r"^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$")
    _SEL = "sha256:" + ",".join(str(i) for i in QUOTE_PCRS)
    _SEL_REPORTED = "sha256:" + ",".join(str(i) for i in REPORTED_PCRS)

    def __init__(self, tcti: str | None = None) -> None:
        self._env = {**os.environ, "TPM2TOOLS_TCTI": tcti} if tcti else None

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=60, env=self._env)

    def measured(self, pcrs: Mapping[int, bytes]) -> None:
        pass  # a real TPM was extended by the real firmware and bootloader

    def read(self) -> dict[int, bytes]:
        return self._pcrread(self._SEL)

    def _pcrread(self, selection: str) -> dict[int, bytes]:
        out = self._run("tpm2_pcrread", selection).stdout
        return {int(m[1]): bytes.fromhex(m[2]) for line in out.splitlines() if (m := self._LINE.match(line))}

    def _ak_public(self, tmp: Path) -> Any:
        """The AK's public key; made once in the owner hierarchy and kept at AK_HANDLE, as EVE does."""
        pem = tmp / "ak.pem"
        try:
            self._run("tpm2_readpublic", "-Q", "-c", AK_HANDLE, "-f", "pem", "-o", str(pem))
        except subprocess.CalledProcessError:
            ctx = str(tmp / "ak.ctx")
            self._run("tpm2_createprimary", "-Q", "-C", "o", "-G", "ecc256:ecdsa-sha256:null", "-a", AK_ATTRIBUTES, "-c", ctx)
            self._run("tpm2_evictcontrol", "-Q", "-C", "o", "-c", ctx, AK_HANDLE)
            self._run("tpm2_readpublic", "-Q", "-c", AK_HANDLE, "-f", "pem", "-o", str(pem))
        return serialization.load_pem_public_key(pem.read_bytes())

    def _ek_public(self, tmp: Path) -> Any:
        """The RSA EK, made once and kept at EK_HANDLE (tpmmgr's ``createEkCertOnTpm`` reads it there)."""
        pem = tmp / "ek.pem"
        try:
            self._run("tpm2_readpublic", "-Q", "-c", EK_HANDLE, "-f", "pem", "-o", str(pem))
        except subprocess.CalledProcessError:
            self._run("tpm2_createek", "-Q", "-c", EK_HANDLE, "-G", "rsa", "-u", str(tmp / "ek.pub"))
            self._run("tpm2_readpublic", "-Q", "-c", EK_HANDLE, "-f", "pem", "-o", str(pem))
        return serialization.load_pem_public_key(pem.read_bytes())

    def certs(self, device: pki.Issued) -> list[dict[str, Any]]:
        """AK, ECDH and EK certs, as EVE posts them with a TPM (spec §2.1; the EK's TPM2_PUBLIC
        metadata item is not sent: eden's ZCert has no meta_data_items)."""
        with tempfile.TemporaryDirectory(prefix="eden-tpm-") as tmp:
            ak = self._ak_public(Path(tmp))
            ek = self._ek_public(Path(tmp))
        return [{"type": "DEVICE_RESTRICTED_SIGNING", "pem": certify(ak, device, "Device Attestation certificate")},
                _ecdh_cert(device),
                {"type": "DEVICE_ENDORSEMENT_RSA", "pem": certify(ek, device, "Device Endorsement certificate")}]

    def quote(self, nonce: bytes) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="eden-tpm-") as tmp:
            self._ak_public(Path(tmp))  # made on first use
            msg, sig = Path(tmp) / "msg", Path(tmp) / "sig"
            self._run("tpm2_quote", "-Q", "-c", AK_HANDLE, "-l", self._SEL, "-q", nonce.hex(), "-g", "sha256",
                      "-m", str(msg), "-s", str(sig))
            attest, signature = msg.read_bytes(), ecdsa_der_from_tpmt(sig.read_bytes())
        pcrs = self._pcrread(self._SEL_REPORTED)
        return {"attest": attest, "signature": signature, "pcrs": {str(i): v.hex() for i, v in sorted(pcrs.items())}}


def detect_tpm() -> Tpm:
    """A real TPM when the resource manager device and tpm2-tools are there, else the soft one."""
    if os.path.exists("/dev/tpmrm0") and shutil.which("tpm2_pcrread"):
        return Tpm2Tools()
    return SoftTpm()
