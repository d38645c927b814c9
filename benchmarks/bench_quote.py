#!/usr/bin/env python3
"""Benchmark the controller's TPM quote checks (eden.controller.quote) and the soft TPM's quote.

    python benchmarks/bench_quote.py              # 2,000 quotes
    python benchmarks/bench_quote.py --count 10000 --json

Prints, per quote: the soft TPM making one (TPMS_ATTEST + ECDSA signature, what each emulated
agent does per attestation) and the controller verifying one (AK cert parse and issuer check,
signature, structure, nonce, selection, PCR digest), single-threaded, as mean microseconds and
quotes/s. A controller verifies one quote per device attestation (every boot, every 403 restart).
"""

from __future__ import annotations

import argparse
import json
import time

from eden.agent.tpm import SoftTpm
from eden.controller import quote
from eden.wire import pki
from eden.wire.gen.attest_pb2 import TPM_HASH_ALGO_SHA256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    device = pki.create_device("bench device")
    tpm = SoftTpm()
    tpm.measured({i: bytes([i]) * 32 for i in range(16)})
    ak_pem = tpm.certs(device)[0]["pem"]
    nonces = [f"{n:032x}".encode() for n in range(args.count)]

    t0 = time.perf_counter()
    quotes = [tpm.quote(n) for n in nonces]
    make = time.perf_counter() - t0

    values = [(int(i), TPM_HASH_ALGO_SHA256, bytes.fromhex(v)) for i, v in quotes[0]["pcrs"].items()]
    t0 = time.perf_counter()
    for n, q in zip(nonces, quotes):
        quote.verify(q["attest"], q["signature"], values, nonce=n, ak_pem=ak_pem, device_cert=device.cert)
    check = time.perf_counter() - t0

    out = {"count": args.count,
           "soft_quote_us": round(make / args.count * 1e6, 1), "soft_quotes_per_s": round(args.count / make),
           "verify_us": round(check / args.count * 1e6, 1), "verifies_per_s": round(args.count / check)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"soft TPM quote:    {out['soft_quote_us']:8.1f} us  ({out['soft_quotes_per_s']} /s)")
        print(f"controller verify: {out['verify_us']:8.1f} us  ({out['verifies_per_s']} /s)  over {args.count} quotes")


if __name__ == "__main__":
    main()
