"""Controller certificates on disk: the ECDH exchange cert EVE 16.12+ requires (spec §2.1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eden.controller.core import Controller
from eden.controller.layout import Layout
from eden.controller.setup import init
from eden.errors import InfrastructureError
from eden.wire import pki
from eden.wire.gen import auth_pb2, certs_pb2


def test_init_issues_signing_and_ecdh_certs_chaining_to_the_root(tmp_path: Path) -> None:
    layout = init(tmp_path / "c")
    root = pki.load_cert(layout.root_cert)
    signing_cert, ecdh = pki.load_cert(layout.cert("signing")), pki.load_pem(layout.cert("ecdh"), layout.key("ecdh"))
    assert pki.is_issued_by(signing_cert, root) and pki.is_issued_by(ecdh.cert, root)
    assert ecdh.cert.public_key() == ecdh.key.public_key() and ecdh.cert != signing_cert
    assert oct(layout.key("ecdh").stat().st_mode & 0o777) == "0o600"


def test_a_directory_without_the_ecdh_cert_gets_one_on_start(tmp_path: Path) -> None:
    layout = init(tmp_path / "c")
    layout.cert("ecdh").unlink()
    layout.key("ecdh").unlink()  # a controller directory made without an ECDH certificate
    ctl = Controller(layout)
    try:
        assert pki.is_issued_by(ctl.ecdh.cert, pki.load_cert(layout.root_cert))
        assert layout.cert("ecdh").read_bytes() == pki.cert_pem(ctl.ecdh.cert)
    finally:
        ctl.close()
    again = Controller(layout)  # kept, not re-issued
    try:
        assert again.ecdh.cert == ctl.ecdh.cert
    finally:
        again.close()


def test_without_the_root_key_the_error_says_how_to_fix(tmp_path: Path) -> None:
    layout = init(tmp_path / "c")
    layout.cert("ecdh").unlink()
    layout.root_key.unlink()
    with pytest.raises(InfrastructureError, match="ECDH exchange certificate.*restore root.key.pem.*eden controller init"):
        Controller(layout)
    proc = subprocess.run([sys.executable, "-m", "eden.cli", "controller", "serve", str(layout.root),
                           "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "ECDH exchange certificate" in proc.stderr and "Traceback" not in proc.stderr
    assert not Layout(layout.root).cert("ecdh").exists()


def test_a_migrated_directory_serves_the_new_ecdh_cert(tmp_path: Path) -> None:
    """Started on a DIR without the ECDH cert, serve issues one and GET certs carries it (spec §2.1)."""
    from eden.controller.testing import DeviceClient, ServeProcess, controller_signing_cert

    layout = init(tmp_path / "c")
    layout.cert("ecdh").unlink()
    layout.key("ecdh").unlink()
    with ServeProcess(layout.root) as server:
        dev = DeviceClient(layout.root, server.info["api_port"], "MIGRATED")
        try:
            signer = controller_signing_cert(dev)  # applies EVE's chain rules, ECDH required
            status, body = dev.raw("GET", "/api/v2/edgedevice/certs")
        finally:
            dev.close()
    assert signer == pki.load_cert(layout.cert("signing"))
    msg = certs_pb2.ZControllerCert.FromString(auth_pb2.AuthContainer.FromString(body).protectedPayload.payload)
    served = [c.cert for c in msg.certs if c.type == certs_pb2.CERT_TYPE_CONTROLLER_ECDH_EXCHANGE]
    assert status == 200 and served == [layout.cert("ecdh").read_bytes()]
