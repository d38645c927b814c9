"""Files in a controller directory (``eden controller init DIR``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict


class ControllerConfig(TypedDict):
    """DIR/controller.json, written once by ``eden controller init``."""

    version: int
    server: str  # HOST:PORT devices reach the device API at
    dns_names: list[str]
    ip_addresses: list[str]
    learn: NotRequired[bool]
    tofu: NotRequired[bool]  # not in directories made before trust-on-first-use
    created: float


class ServeInfo(TypedDict):
    """DIR/serve.json, written by a running ``eden controller serve`` once it listens."""

    pid: int
    api_url: str
    api_port: int
    admin_url: str
    admin_port: int
    dir: str
    root_certificate: str
    token_file: str
    started: float


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "controller.json"

    @property
    def db(self) -> Path:
        return self.root / "controller.db"

    @property
    def serve_json(self) -> Path:
        return self.root / "serve.json"

    @property
    def token(self) -> Path:
        return self.root / "admin.token"

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.cert.pem"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key.pem"

    @property
    def content_dir(self) -> Path:
        """Content-addressed datastore: one file per sha256 (hex) name."""
        return self.root / "content"

    @property
    def root_cert(self) -> Path:
        return self.root / "root-certificate.pem"

    @property
    def root_key(self) -> Path:
        return self.root / "root.key.pem"

    def initialised(self) -> bool:
        return self.config.exists()

    def read_config(self) -> ControllerConfig:
        return json.loads(self.config.read_text())

    def read_token(self) -> str:
        return self.token.read_text().strip()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` via a temp file + rename, so readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
