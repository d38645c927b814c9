"""EVE API v2 wire format: protobuf messages, signed envelopes and certificates.

- ``eden.wire.gen``: generated protobuf modules (sources in ``proto/``;
  regenerate with ``scripts/gen-protos``).
- ``eden.wire.signing``: AuthContainer sealing/opening (ECDSA P-256, raw r||s).
- ``eden.wire.pki``: root CA, controller TLS/signing certs, onboarding and
  device certs, PEM save/load.
"""
