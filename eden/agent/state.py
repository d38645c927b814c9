"""The agent's state directory: what survives a reboot or a power cut of an emulated device.

Layout of ``DIR``::

    spec.json                  the device spec (copied at first start)
    persist.json               Persist (zboot GPT attributes, /persist, TPM NV) + the boot count
    device.key.pem/.cert.pem   device identity: EC P-256, self-signed (EVE makes it on first boot)
    soft_serial                a UUID made on first start (EVE: /persist/status/soft_serial)
    checkpoint/controllercerts the last good ``certs`` answer (EVE: /persist/checkpoint/controllercerts)
    config/                    as on EVE's CONFIG partition (§1):
        server                 controller URL
        root-certificate.pem   the CA the controller's TLS and signing certs chain to
        onboard.cert.pem/.key.pem

``persist.json`` is written atomically (tmp + fsync + rename + dir fsync), so a power cut (SIGKILL)
leaves either the previous or the next version, never a torn file. While the device runs it is
written with ``power_lost`` set: that is what the next boot finds after a power cut, as the
simulator's ``power_off`` sets it (§7 POWER_FAIL); a reset the node asked for writes the real value.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509

from eden.agent.spec import AgentSpec, load_spec
from eden.errors import InvalidInput
from eden.wire import pki
from eve import enums as eve_enums
from eve.config_items import GlobalConfig, ItemError
from eve.enums import PartitionState
from eve.logs import LogPersist
from eve.node import Persist
from eve.zboot import LABELS, Partition, Zboot

FORMAT = 1
_ENUMS: dict[str, type[enum.Enum]] = {
    name: obj for name, obj in vars(eve_enums).items() if isinstance(obj, type) and issubclass(obj, enum.Enum)
}


# -- JSON for Persist --------------------------------------------------------------------------------
def _enc(v: Any) -> Any:
    """Tagged JSON so that types survive: enums, bytes, sets, tuples, non-string dict keys."""
    if isinstance(v, enum.Enum):
        return {"$enum": type(v).__name__, "name": v.name}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, (set, frozenset)):
        return {"$set": [_enc(x) for x in sorted(v)]}
    if isinstance(v, tuple):
        return {"$tuple": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: _enc(x) for k, x in v.items()}
        return {"$dict": [[_enc(k), _enc(x)] for k, x in v.items()]}
    raise TypeError(f"cannot persist a {type(v).__name__}")


def _dec(v: Any) -> Any:
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "$enum" in v:
        return _ENUMS[v["$enum"]][v["name"]]
    if "$bytes" in v:
        return bytes.fromhex(v["$bytes"])
    if "$set" in v:
        return {_dec(x) for x in v["$set"]}
    if "$tuple" in v:
        return tuple(_dec(x) for x in v["$tuple"])
    if "$dict" in v:
        return {_dec(k): _dec(x) for k, x in v["$dict"]}
    return {k: _dec(x) for k, x in v.items()}


def persist_to_json(p: Persist, *, power_lost: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        if f.name == "zboot":
            out["zboot"] = {
                "current": value.current,
                "partitions": {
                    lbl: {"version": part.version, "image_id": part.image_id, "state": part.state.value}
                    for lbl, part in value.partitions.items()
                },
            }
        elif f.name == "items":
            out["items"] = {
                "values": _enc(value.values),
                "errors": [[e.key, e.value, e.reason] for e in value.errors],
            }
        elif f.name == "logs":  # /persist/newlog counters (eve/logs.py)
            out["logs"] = dataclasses.asdict(value)
        else:
            out[f.name] = _enc(value)
    if power_lost is not None:
        out["power_lost"] = power_lost
    return out


def persist_from_json(d: dict[str, Any]) -> Persist:
    zb = d["zboot"]
    parts = {
        lbl: Partition(lbl, p["version"], p["image_id"], PartitionState(p["state"])) for lbl, p in zb["partitions"].items()
    }
    if set(parts) != set(LABELS):
        raise ValueError(f"zboot partitions must be {LABELS}")
    items = GlobalConfig(values=_dec(d["items"]["values"]), errors=[ItemError(*e) for e in d["items"]["errors"]])
    kwargs = {f.name: _dec(d[f.name]) for f in dataclasses.fields(Persist) if f.name not in ("zboot", "items", "logs") and f.name in d}
    if isinstance(d.get("logs"), dict):
        kwargs["logs"] = LogPersist(**{k: int(v) for k, v in d["logs"].items() if k in ("made", "done", "moved_aside")})
    return Persist(zboot=Zboot(parts, zb["current"]), items=items, **kwargs)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` so that a crash leaves the old or the new content (tmp, fsync, rename, fsync dir)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- the directory -----------------------------------------------------------------------------------
@dataclasses.dataclass
class ControllerConfig:
    """EVE's /config as far as reaching the controller goes."""

    server: str | None
    root_pem: bytes
    onboard: pki.Issued


@dataclasses.dataclass
class Saved:
    persist: Persist
    boots: int  # power-ons so far (seeds each boot's random stream)


class StateDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_dir = self.path / "config"

    # files
    @property
    def spec_file(self) -> Path:
        return self.path / "spec.json"

    @property
    def persist_file(self) -> Path:
        return self.path / "persist.json"

    def exists(self) -> bool:
        return self.persist_file.is_file()

    # spec
    def init(self, spec: AgentSpec) -> None:
        """First start: keep the spec and make the device identity (EVE does this on first boot)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(exist_ok=True)
        atomic_write(self.spec_file, spec.model_dump_json(indent=2).encode())
        if not (self.path / "device.cert.pem").is_file():
            # Key first, cert last and both durable: the cert's presence means "identity made", so a
            # power cut in between leaves no cert and the next first start makes a new pair (a real
            # VM loses unsynced page cache on a power cut; a killed process does not).
            identity = pki.create_device(spec.serial)
            atomic_write(self.path / "device.key.pem", identity.key_pem, mode=0o600)
            atomic_write(self.path / "device.cert.pem", identity.cert_pem)

    def load_spec(self) -> AgentSpec:
        if not self.spec_file.is_file():
            raise InvalidInput.at(str(self.spec_file), 0, 0, "no device spec in the state directory", "pass --spec FILE on the first start")
        return load_spec(self.spec_file)

    # persist
    def save(self, persist: Persist, boots: int, *, power_lost: bool | None = None, unless: bytes | None = None) -> bytes:
        """Write the state unless it equals ``unless`` (the last write); return what is on disk.

        ``power_lost`` overrides the flag on disk (see the module docstring)."""
        doc = {"format": FORMAT, "boots": boots, "persist": persist_to_json(persist, power_lost=power_lost)}
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        if data != unless:
            atomic_write(self.persist_file, data)
        return data

    def load(self) -> Saved | None:
        if not self.persist_file.is_file():
            return None
        doc = json.loads(self.persist_file.read_bytes())
        if doc.get("format") != FORMAT:
            raise InvalidInput.at(str(self.persist_file), 0, 0, f"unsupported state format {doc.get('format')!r}")
        return Saved(persist_from_json(doc["persist"]), int(doc["boots"]))

    @property
    def certs_checkpoint(self) -> Path:
        return self.path / "checkpoint" / "controllercerts"

    def soft_serial(self) -> str:
        """The device's soft serial, made once and kept (sent as X-Soft-Serial before onboarding)."""
        path = self.path / "soft_serial"
        if path.is_file():
            return path.read_text().strip()
        value = str(uuid.uuid4())
        atomic_write(path, value.encode() + b"\n")
        return value

    # identity
    def device_identity(self) -> pki.Issued:
        return pki.load_pem(self.path / "device.cert.pem", self.path / "device.key.pem")

    def write_controller_config(
        self,
        *,
        server: str | None = None,
        root_pem: bytes | None = None,
        onboard_cert_pem: bytes | None = None,
        onboard_key_pem: bytes | None = None,
    ) -> None:
        """Set what was given; leave the rest. No onboarding cert at all: make a self-signed one."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        if server is not None:
            atomic_write(self.config_dir / "server", server.encode() + b"\n")
        if root_pem is not None:
            x509.load_pem_x509_certificate(root_pem)  # fail early on garbage
            atomic_write(self.config_dir / "root-certificate.pem", root_pem)
        if onboard_cert_pem is not None:
            atomic_write(self.config_dir / "onboard.cert.pem", onboard_cert_pem)
        if onboard_key_pem is not None:
            atomic_write(self.config_dir / "onboard.key.pem", onboard_key_pem, 0o600)
        if not (self.config_dir / "onboard.cert.pem").is_file():
            pki.save_pem(pki.create_onboarding(), self.config_dir / "onboard.cert.pem", self.config_dir / "onboard.key.pem")

    def controller_config(self) -> ControllerConfig:
        root = self.config_dir / "root-certificate.pem"
        if not root.is_file():
            raise InvalidInput.at(str(root), 0, 0, "no controller root certificate", "pass --root-cert FILE")
        server_file = self.config_dir / "server"
        server = server_file.read_text().strip() if server_file.is_file() else None
        onboard = pki.load_pem(self.config_dir / "onboard.cert.pem", self.config_dir / "onboard.key.pem")
        return ControllerConfig(server, root.read_bytes(), onboard)
