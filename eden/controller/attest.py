"""The controller's side of ``attest`` beyond the model's FSM (spec §2.1, §5).

* ATTEST_REQ_CERT: the posted device certs (attestation key, ECDH, EK) are stored per device and
  answered 201 + ATTEST_RESP_CERT (a refusal puts EVE into EDGE_NODE_CERTS_REFUSED).
* QUOTE from a TPM: :func:`eden.controller.quote.verify` first; a failed check is answered 201
  with its code (never a pass), a good quote goes on to the model's PCR templates / TOFU.
* STORE_KEYS: the vault key is escrowed as opaque bytes and handed back as is after a good quote.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from eden.controller import quote
from eden.controller.admin_types import AttestDetail
from eden.controller.core import Controller, parse_cert

AK_CERT = "DEVICE_RESTRICTED_SIGNING"
EK_CERT = "DEVICE_ENDORSEMENT_RSA"  # posted only with a TPM (tpmmgr createEkCert)
_B64 = "b64:"  # prefix of an escrowed key kept as base64 in the model's text field


def handle(ctl: Controller, i: int, body: dict[str, Any]) -> tuple[int, dict[str, Any], AttestDetail]:
    """(status, answer, result detail for the history) for one decoded attest request."""
    kind = body.get("type")
    if kind == "CERT":
        return _certs(ctl, i, body)
    if kind == "QUOTE":
        return _quote(ctl, i, body)
    if kind == "STORE_KEYS" and isinstance(body.get("key"), bytes):
        body = {**body, "key": _B64 + base64.b64encode(body["key"]).decode()}
    status, answer = ctl.model.answer(i, "attest", body)
    return status, answer, {}


def _certs(ctl: Controller, i: int, body: dict[str, Any]) -> tuple[int, dict[str, Any], AttestDetail]:
    status, answer = ctl.model.answer(i, "attest", {"type": "CERT"})  # the shared rule: refused -> 404
    if status != 201:
        return status, answer, {}  # refused: the certs held before stay
    side = ctl.model.side[i]
    posted = {}
    for c in body.get("certs", []):
        try:
            pem = c["pem"].decode("ascii")
        except UnicodeDecodeError:
            pem = ""
        posted[c["type"]] = pem
    side.certs = posted
    side.certs_posted += 1
    side.certs_at = time.time()
    return 201, {"type": "CERT"}, {"certs": sorted(posted)}


def _reject(ctl: Controller, i: int, exc: quote.QuoteRejected) -> tuple[int, dict[str, Any], AttestDetail]:
    """The model's bookkeeping of a failed quote (eve.controller ``_attest``): no token, no key."""
    dev = ctl.model.devices[i]
    if exc.code != "NONCE_MISMATCH":
        dev.nonce = None
        dev.attest_failures += 1
        dev.token = None
        dev.token_required = False
        ctl.model.attestation_changed(i)
    return 201, {"type": "QUOTE", "code": exc.code}, {"field": exc.field, "reason": exc.reason}


def _quote(ctl: Controller, i: int, body: dict[str, Any]) -> tuple[int, dict[str, Any], AttestDetail]:
    dev = ctl.model.devices[i]
    ak = ctl.model.side[i].certs.get(AK_CERT)
    if not body.get("tpm"):
        # No TPM (spec §5): EVE's getQuote returns nothing, so attestData is empty (eden's agent
        # puts the nonce there). Nothing to verify, so never an escrowed key; and refused once
        # the device showed it has a TPM: an EK cert or an escrowed key. An AK cert does not
        # show one: a TPM-less EVE posts a software AK cert (tpmmgr createSoftCerts /
        # createQuoteCertSoft, P:cmd/tpmmgr/tpmmgr.go) and no EK cert (createEkCert).
        if ctl.model.side[i].certs.get(EK_CERT) or dev.escrow is not None:
            return _reject(ctl, i, quote.QuoteRejected("QUOTE_FAILED", "signature", "unsigned quote from a device with a TPM"))
        attest_data = body.get("attest", b"")
        try:
            nonce = attest_data.decode() if attest_data else dev.nonce
        except UnicodeDecodeError:
            nonce = None
        status, answer = ctl.model.answer(i, "attest", {"type": "QUOTE", "nonce": nonce, "tpm": False})
        answer.pop("key", None)
        return status, answer, {}
    try:
        device_cert = parse_cert(dev.cert or "")
    except ValueError:  # no usable device cert on record: nothing to check the AK against
        return _reject(ctl, i, quote.QuoteRejected("NO_CERT_FOUND", "certs", "no device certificate on record"))
    try:
        checked = quote.verify(body.get("attest", b""), body.get("signature", b""), body.get("pcr_values", []),
                               nonce=dev.nonce.encode() if dev.nonce is not None else None,
                               ak_pem=ak.encode() if ak else None, device_cert=device_cert)
    except quote.QuoteRejected as exc:
        return _reject(ctl, i, exc)
    ctl.learn_quote(i, checked.pcrs)
    model_body = {"type": "QUOTE", "nonce": dev.nonce, "tpm": True, "pcrs": {str(k): v.hex() for k, v in checked.pcrs.items()}}
    status, answer = ctl.model.answer(i, "attest", model_body)
    detail: AttestDetail = {}
    if answer.get("code") == "QUOTE_FAILED":
        pcrs = answer.get("mismatch", [])
        detail = {"field": "pcr_values", "reason": "PCR " + ", ".join(map(str, pcrs)) + " not in any approved template"}
    key = answer.get("key")
    if isinstance(key, str) and key.startswith(_B64):
        answer = {**answer, "key": base64.b64decode(key[len(_B64):])}
    return status, answer, detail
