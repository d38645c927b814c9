"""``eden controller init`` and ``device-config``: the PKI and the files an EVE CONFIG partition needs."""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import time
from pathlib import Path

from eden.controller.layout import ControllerConfig, Layout, write_atomic
from eden.errors import InfrastructureError
from eden.wire import pki

DEFAULT_SERVER = "localhost:8443"


class AlreadyInitialised(Exception):
    pass


def init(root: Path, *, server: str = DEFAULT_SERVER, sans: list[str] | None = None, learn: bool = False,
         tofu: bool = False) -> Layout:
    """Create a controller directory. ``learn``: auto-approve each device's first PCR template;
    ``tofu``: trust-on-first-use templates for real TPMs (firmware PCRs learned from the first quote
    whose PCR 13 is a declared release; see :mod:`eden.controller.model`)."""
    layout = Layout(root)
    if layout.initialised():
        raise AlreadyInitialised(f"{root} is already an initialised controller directory ({layout.config.name} exists)")
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--server must be HOST:PORT, got {server!r}")
    names, ips = ["localhost"], ["127.0.0.1"]
    for san in [host.strip("[]"), *(sans or [])]:
        try:
            ipaddress.ip_address(san)
            if san not in ips:
                ips.append(san)
        except ValueError:
            if san not in names:
                names.append(san)
    root.mkdir(parents=True, exist_ok=True)
    ca = pki.create_root_ca()
    pki.save_pem(ca, layout.root_cert, layout.root_key)
    pki.save_pem(pki.create_controller_tls(ca, names, ips), layout.cert("tls"), layout.key("tls"))
    pki.save_pem(pki.create_controller_signing(ca), layout.cert("signing"), layout.key("signing"))
    pki.save_pem(pki.create_controller_ecdh(ca), layout.cert("ecdh"), layout.key("ecdh"))
    pki.save_pem(pki.create_onboarding("eden onboard"), layout.cert("onboard"), layout.key("onboard"))
    write_atomic(layout.token, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
    config: ControllerConfig = {"version": 1, "server": server, "dns_names": names, "ip_addresses": ips, "learn": learn,
              "tofu": tofu, "created": time.time()}
    write_atomic(layout.config, json.dumps(config, indent=1).encode())  # last: marks DIR as initialised
    return layout


def ensure_ecdh(layout: Layout) -> pki.Issued:
    """The controller's ECDH exchange cert (spec §2.1: EVE 16.12+ refuses ``GET certs`` without
    one). A directory made before eden issued it gets one now, from the root key in DIR."""
    cert, key = layout.cert("ecdh"), layout.key("ecdh")
    if cert.exists() and key.exists():
        return pki.load_pem(cert, key)
    if not layout.root_key.exists():
        raise InfrastructureError(
            f"{layout.root} has no ECDH exchange certificate ({cert.name}), which EVE 16.12+ requires, and no "
            f"{layout.root_key.name} to issue one: restore {layout.root_key.name} and start again, or make a new "
            f"directory with 'eden controller init' (devices then need the new root-certificate.pem)")
    try:
        ca = pki.load_pem(layout.root_cert, layout.root_key)
    except (OSError, ValueError) as exc:
        raise InfrastructureError(f"{layout.root}: cannot load the root CA to issue {cert.name}: {exc}") from None
    issued = pki.create_controller_ecdh(ca)
    write_atomic(key, issued.key_pem, mode=0o600)
    write_atomic(cert, issued.cert_pem)
    return issued


def device_config(layout: Layout, serial: str, out: Path) -> list[str]:
    """Write the CONFIG partition files for one device into ``out``; returns the file names."""
    if not layout.initialised():
        raise InfrastructureError(f"{layout.root} is not an initialised controller directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / "server").write_text(layout.read_config()["server"] + "\n")
    shutil.copyfile(layout.root_cert, out / "root-certificate.pem")
    shutil.copyfile(layout.root_cert, out / "v2tlsbaseroot-certificates.pem")
    shutil.copyfile(layout.cert("onboard"), out / "onboard.cert.pem")
    write_atomic(out / "onboard.key.pem", layout.key("onboard").read_bytes(), mode=0o600)
    return ["server", "root-certificate.pem", "v2tlsbaseroot-certificates.pem", "onboard.cert.pem", "onboard.key.pem"]
