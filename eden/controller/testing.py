"""Drive a controller from tests and harness code: a serve subprocess and a signing device client."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from cryptography import x509

from eden.agent.tpm import SoftTpm
from eden.controller.client import AdminClient
from eden.controller.layout import Layout, ServeInfo
from eden.wire import codec, pki, signing
from eden.runtime.deadline import Deadline
from eden.wire.gen import auth_pb2

PREFIX = "/api/v2/edgedevice"


class ServeProcess:
    """``eden controller serve DIR`` on ephemeral ports; waits for serve.json; kill on exit."""

    def __init__(self, root: Path, *, timeout: float = 90.0, args: tuple[str, ...] = ()) -> None:  # a deadline: CI hosts are loaded
        """``args``: more ``serve`` options (``--limit``, ``--content-from``, ...)."""
        self.layout = Layout(root)
        self.args = tuple(args)
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: ServeInfo  # once started

    def start(self) -> "ServeProcess":
        self.layout.serve_json.unlink(missing_ok=True)
        self.log = open(self.layout.root / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eden.cli", "controller", "serve", str(self.layout.root),
             "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *self.args],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = Deadline(self.timeout)
        while not deadline.expired():
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"controller exited with {self.proc.returncode}; see {self.layout.root / 'serve.log'}")
            if self.layout.serve_json.exists():
                info: ServeInfo = json.loads(self.layout.serve_json.read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("controller did not write serve.json in time")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def admin(self) -> AdminClient:
        return AdminClient(self.info["admin_url"], self.layout.read_token(), cafile=self.layout.root_cert)

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DeviceClient:
    """One EVE device speaking API v2 over HTTPS with real AuthContainers (keep-alive)."""

    def __init__(self, root: Path, port: int, serial: str, *, device: pki.Issued | None = None) -> None:
        self.layout = Layout(root)
        self.serial = serial
        self.device = device or pki.create_device(f"device {serial}")
        self.onboard = pki.load_pem(self.layout.cert("onboard"), self.layout.key("onboard"))
        self.root_cert = pki.load_cert(self.layout.root_cert)
        ctx = ssl.create_default_context(cafile=str(self.layout.root_cert))
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        self.uuid: str | None = None
        self.tpm: SoftTpm | None = None

    def close(self) -> None:
        self.conn.close()

    def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/x-proto-binary"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def seal(self, payload: bytes, signer: pki.Issued | None = None, *, include_cert: bool = False) -> bytes:
        signer = signer or self.device
        return signing.seal(payload, signer.key, signer.cert, include_cert=include_cert).SerializeToString()

    def open_reply(self, body: bytes, signing_cert: x509.Certificate | bytes) -> bytes:
        """Verify a controller reply against the signing cert (which must chain to the root): its
        senderCertHash names the PEM as served by GET certs (spec §2.1)."""
        container = auth_pb2.AuthContainer.FromString(body)
        pem = signing_cert if isinstance(signing_cert, bytes) else pki.cert_pem(signing_cert)
        return signing.open_container(container, signing.pem_index([pem]))

    def post(self, kind: str, payload: bytes, *, signer: pki.Issued | None = None, include_cert: bool = False,
             uuid: str | None = None) -> tuple[int, bytes]:
        _method, path = codec.request_path(kind, uuid or self.uuid)
        return self.raw("POST", path, self.seal(payload, signer, include_cert=include_cert))

    def send(self, kind: str, body: Mapping[str, object]) -> tuple[int, bytes]:
        """Encode a node body with the codec and post every payload; returns the last answer."""
        payloads = codec.encode_request(kind, body, device_uuid=self.uuid, device_cert_pem=pki.cert_pem(self.device.cert).decode())
        status, reply = 0, b""
        for payload in payloads:
            status, reply = self.post(kind, payload, signer=self.onboard if kind == "register" else None,
                                      include_cert=kind == "register")
        return status, reply

    def tpm_quote(self, nonce: str, pcrs: dict[int, bytes]) -> dict[str, Any]:
        """A QUOTE body as EVE's tpmmgr makes it (binary TPMS_ATTEST + DER signature), from a
        software TPM holding ``pcrs``; the first call posts its certs (ATTEST_REQ_CERT)."""
        if self.tpm is None:
            self.tpm = SoftTpm()
            status, _ = self.send("attest", {"type": "CERT", "certs": self.tpm.certs(self.device)})
            if status != 201:
                raise RuntimeError(f"cert post answered {status}")
        self.tpm.measured(pcrs)
        return {"type": "QUOTE", "nonce": nonce, "tpm": True, **self.tpm.quote(nonce.encode())}

    def register(self) -> int:
        return self.send("register", {"serial": self.serial, "cert": pki.cert_pem(self.device.cert).decode()})[0]

    def fetch_uuid(self, signing_cert: x509.Certificate | bytes) -> str:
        status, reply = self.send("uuid", {})
        if status != 200:
            raise RuntimeError(f"uuid answered {status}")
        self.uuid = codec.decode_response("uuid", 200, self.open_reply(reply, signing_cert))["uuid"]
        return self.uuid

    def onboard_fully(self, signing_cert: x509.Certificate | bytes) -> str:
        status = self.register()
        if status not in (200, 201):
            raise RuntimeError(f"register answered {status}")
        return self.fetch_uuid(signing_cert)


def controller_signing_cert(client: DeviceClient) -> x509.Certificate:
    """GET certs, verify its signature with the cert it carries, and check that cert chains to the root."""
    status, body = client.raw("GET", f"{PREFIX}/certs")
    if status != 200:
        raise RuntimeError(f"certs answered {status}")
    from eden.wire.gen import certs_pb2

    container = auth_pb2.AuthContainer.FromString(body)
    msg = certs_pb2.ZControllerCert.FromString(container.protectedPayload.payload)
    try:
        pem = pki.check_controller_certs(msg, client.root_cert)  # EVE's chain rules (spec §2.1)
    except pki.ControllerCertsError as exc:
        raise RuntimeError(f"certs refused: {exc}") from None
    signing.open_container(container, signing.pem_index([pem]))
    return signing.load_certificate(pem)
