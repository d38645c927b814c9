"""labgrid places: eden as a client of a labgrid coordinator (https://github.com/labgrid-project/labgrid).

A multi-host lab already has a lab manager; eden does not build its own. For a place with a
``labgrid:`` block eden locks the place in labgrid's coordinator (so eden on another host, or a
person with ``labgrid-client``, sees it as taken) and takes the place's power and console from the
resources labgrid's exporters publish for it: a ``NetworkSerialPort`` (ser2net) becomes eden's
network console, a ``PDUDaemonPort`` eden's PDUDaemon power driver.

eden never imports labgrid: its pyserial fork and its grpcio/protobuf pins would clash with eden's
own. It runs ``labgrid-client`` from labgrid's own virtualenv (``scripts/install-labgrid``) and reads
its output; every call is bounded by a :class:`~eden.runtime.deadline.Deadline` and the place's
``timeout``, and killed with its process group past that. The calls block: from an event loop, run
them with ``asyncio.to_thread``.

Commands used (labgrid 26.0.1): ``-x COORDINATOR -p PLACE acquire`` / ``release`` (exit 0, or 1 with
``labgrid-client: Error: ...``) and ``env`` (the acquired place's resources as YAML:
``targets: {PLACE: {resources: [{CLASS: {PARAM: VALUE}}, ...]}}``). The user labgrid records as the
holder is ``HOSTNAME/USER``, from ``LG_HOSTNAME`` and ``LG_USERNAME`` (default: this host and user).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import yaml

from eden.errors import InfrastructureError
from eden.lab.shell import tail
from eden.runtime.deadline import Deadline
from eden.runtime.procs import with_parent_death_signal

if TYPE_CHECKING:
    from eden.lab.model import Labgrid

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ENV = "EDEN_LABGRID_CLIENT"
INSTALL_HINT = "run scripts/install-system-deps (it installs labgrid into .tools/labgrid)"
PDUDAEMON_DEFAULT_PORT = 16421
"""The port labgrid's PDUDaemonDriver dials when a PDUDaemonPort's host has none."""

_BUSY = re.compile(r"already acquired by (\S+?)\.?(?:\s|$)")
_OURS = "You have already acquired place"
_NOT_ACQUIRED = "is not acquired"
_OTHER_USER = re.compile(r"acquired by a different user \(([^)]*)\)")


class LabgridBusy(InfrastructureError):
    """The labgrid place is locked by another labgrid user (another host's eden, a person)."""

    def __init__(self, message: str, holder: str | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class PduDaemonTarget:
    """A PDUDaemon outlet, as eden's :class:`~eden.lab.power.PduDaemonPower` takes it."""

    url: str
    hostname: str
    """The PDU's name in PDUDaemon's configuration (labgrid's ``pdu``)."""
    port: int
    """The outlet (labgrid's ``index``)."""


@dataclass(frozen=True)
class LabgridResources:
    """What eden uses of an acquired labgrid place's resources."""

    console_url: str | None
    """``tcp://h:p`` (a ``raw`` NetworkSerialPort) or ``rfc2217://h:p``; None: the place exports none."""
    power: PduDaemonTarget | None
    """Its PDUDaemonPort; None: the place exports none."""
    others: tuple[str, ...] = ()
    """The classes of its other resources (not used by eden), for messages."""


def client_path() -> str:
    """labgrid-client: $EDEN_LABGRID_CLIENT, else .tools/labgrid/bin/labgrid-client, else PATH."""
    configured = os.environ.get(CLIENT_ENV)
    if configured:
        if not os.access(configured, os.X_OK):
            raise InfrastructureError(f"{CLIENT_ENV}={configured}: not an executable labgrid-client")
        return configured
    bundled = ROOT / ".tools" / "labgrid" / "bin" / "labgrid-client"
    if os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which("labgrid-client")
    if found:
        return found
    raise InfrastructureError(f"labgrid-client not found (not in {bundled.parent}, ${CLIENT_ENV} or PATH): "
                              f"{INSTALL_HINT}")


def _host_port_url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _split_pdudaemon_host(host: str) -> tuple[str, int]:
    """A PDUDaemonPort's ``host`` (``h``, ``h:p``, ``[v6]:p`` or ``//h:p``), read as labgrid does."""
    from urllib.parse import urlsplit

    parts = urlsplit(host if "//" in host else "//" + host)
    if not parts.hostname:
        raise ValueError(f"PDUDaemonPort host {host!r} has no host name")
    return parts.hostname, parts.port or PDUDAEMON_DEFAULT_PORT


def parse_env(text: str, place: str) -> LabgridResources:
    """``labgrid-client env`` output -> the resources eden uses; ValueError on what eden cannot use."""
    data = yaml.safe_load(text)
    targets = data.get("targets") if isinstance(data, dict) else None
    target = targets.get(place) if isinstance(targets, dict) and len(targets) == 1 else None
    if not isinstance(target, dict):
        raise ValueError(f"no target '{place}' in labgrid-client env's output")
    listed = target.get("resources") or []
    if not isinstance(listed, list):
        raise ValueError("labgrid-client env: 'resources' is not a list")
    serial: list[dict[str, object]] = []
    pdu: list[dict[str, object]] = []
    others: list[str] = []
    for entry in listed:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"labgrid-client env: unexpected resource entry {entry!r}")
        ((cls, params),) = entry.items()
        params = params if isinstance(params, dict) else {}
        if cls == "NetworkSerialPort":
            serial.append(params)
        elif cls == "PDUDaemonPort":
            pdu.append(params)
        else:
            others.append(f"{cls} model {params['model']}" if "model" in params else str(cls))
    for what, found in (("NetworkSerialPort", serial), ("PDUDaemonPort", pdu)):
        if len(found) > 1:
            raise ValueError(f"the place exports {len(found)} {what}s; eden needs one (match only one to the place)")
    console_url = None
    if serial:
        s = serial[0]
        protocol = s.get("protocol", "rfc2217")
        host, port = s.get("host"), s.get("port")
        if not isinstance(host, str) or not isinstance(port, int):
            raise ValueError(f"its NetworkSerialPort has no host and port (the exporter's serial port is missing?): {s}")
        if protocol not in ("raw", "rfc2217"):
            raise ValueError(f"its NetworkSerialPort protocol is {protocol!r}; eden reads 'raw' and 'rfc2217'")
        console_url = _host_port_url("tcp" if protocol == "raw" else "rfc2217", host, port)
    power = None
    if pdu:
        p = pdu[0]
        host, name, index = p.get("host"), p.get("pdu"), p.get("index")
        if not isinstance(host, str) or not isinstance(name, str) or index is None:
            raise ValueError(f"its PDUDaemonPort lacks host, pdu or index: {p}")
        h, port = _split_pdudaemon_host(host)
        # labgrid's PDUDaemonDriver: GET http://HOST:PORT/power/control/CMD?hostname=PDU&port=INDEX
        power = PduDaemonTarget(_host_port_url("http", h, port), name, int(str(index)))
    return LabgridResources(console_url, power, tuple(others))


class LabgridClient:
    """One labgrid place, through ``labgrid-client``. ``user``/``hostname`` override the identity
    labgrid records as the holder (``LG_USERNAME``/``LG_HOSTNAME``)."""

    def __init__(self, coordinator: str, place: str, *, name: str | None = None, timeout: float = 30.0,
                 user: str | None = None, hostname: str | None = None) -> None:
        self.coordinator = coordinator
        self.place = place
        self.name = name or place
        """eden's name of the place, for messages."""
        self.timeout = timeout
        self.user = user
        self.hostname = hostname
        self.acquired = False
        self.adopted = False
        """The lock was ours already (a previous eden run of this host and user that did not release)."""

    @classmethod
    def for_place(cls, name: str, config: Labgrid, *, user: str | None = None,
                  hostname: str | None = None) -> LabgridClient:
        return cls(config.coordinator, config.place, name=name, timeout=config.timeout, user=user, hostname=hostname)

    def describe(self) -> str:
        return f"labgrid place {self.place} at {self.coordinator}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("LG_PLACE", "LG_ENV", "LG_STATE", "LG_PROXY")}
        if self.user:
            env["LG_USERNAME"] = self.user
        if self.hostname:
            env["LG_HOSTNAME"] = self.hostname
        return env

    def run(self, *args: str, deadline: Deadline | None = None) -> tuple[int, str]:
        """``labgrid-client -x COORD -p PLACE ARGS``: (exit code, output). Raises InfrastructureError if
        it cannot start or overruns (then its process group is killed)."""
        limit = self.timeout if deadline is None else min(self.timeout, deadline.remaining())
        argv = [client_path(), "-x", self.coordinator, "-p", self.place, *args]
        try:
            proc = subprocess.Popen(with_parent_death_signal(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=self._env(), start_new_session=True)
        except OSError as exc:
            raise InfrastructureError(f"place {self.name}: cannot start labgrid-client: {exc}; {INSTALL_HINT}") from None
        try:
            out, _ = proc.communicate(timeout=max(0.0, limit))
        except subprocess.TimeoutExpired:
            self._kill(proc)
            out = self._leftover(proc)
            raise InfrastructureError(
                f"place {self.name}: labgrid-client {' '.join(args)} ({self.describe()}) did not finish in "
                f"{limit:.1f} s (killed); last output:\n{tail(out)}") from None
        except BaseException:
            self._kill(proc)
            raise
        self._kill(proc)  # helpers it left in its group
        return proc.returncode, out.decode(errors="replace")

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    @staticmethod
    def _leftover(proc: subprocess.Popen[bytes]) -> bytes:
        try:
            return proc.communicate(timeout=2)[0] or b""
        except (subprocess.TimeoutExpired, ValueError):
            return b""

    def _failed(self, what: str, code: int, out: str) -> InfrastructureError:
        return InfrastructureError(f"place {self.name}: labgrid-client {what} failed for {self.describe()} "
                                   f"(exit {code}); last output:\n{tail(out.encode())}")

    def acquire(self, deadline: Deadline | None = None) -> None:
        """Lock the place in labgrid; :class:`LabgridBusy` naming the holder if another user has it.

        A lock already held by this host and user is taken over (``adopted``): labgrid locks never
        expire, so a run of this host that died holding one would otherwise block the place for good;
        eden's own lease on the place (its lease store) is what keeps two eden runs apart."""
        code, out = self.run("acquire", deadline=deadline)
        if code == 0:
            self.acquired = True
            return
        if _OURS in out:
            self.acquired = self.adopted = True
            return
        busy = _BUSY.search(out)
        if busy:
            raise LabgridBusy(f"place {self.name}: {self.describe()} is acquired by {busy.group(1)}", busy.group(1))
        raise self._failed("acquire", code, out)

    def release(self, deadline: Deadline | None = None) -> None:
        """Unlock the place; a place not locked (any more) is fine. Held by another user (someone
        kicked us): :class:`LabgridBusy`, and nothing is released."""
        code, out = self.run("release", deadline=deadline)
        if code == 0 or _NOT_ACQUIRED in out:
            self.acquired = False
            return
        other = _OTHER_USER.search(out)
        if other:
            self.acquired = False
            raise LabgridBusy(f"place {self.name}: {self.describe()} is held by {other.group(1)}, not by us: "
                              "not released", other.group(1))
        raise self._failed("release", code, out)

    def resources(self, deadline: Deadline | None = None) -> LabgridResources:
        """The acquired place's console and power, from ``labgrid-client env`` (needs the lock)."""
        code, out = self.run("env", deadline=deadline)
        if code != 0:
            raise self._failed("env", code, out)
        try:
            return parse_env(out, self.place)
        except (ValueError, yaml.YAMLError) as exc:
            raise InfrastructureError(f"place {self.name}: {self.describe()}: {exc}") from None


class LabgridLease:
    """A labgrid place held for a block: ``with LabgridLease(client, deadline) as res: ...`` acquires,
    reads the resources, and releases at the end (also on errors; a release failure then is not
    allowed to hide the block's own error)."""

    def __init__(self, client: LabgridClient, deadline: Deadline | None = None) -> None:
        self.client = client
        self.deadline = deadline
        self.resources: LabgridResources | None = None

    def acquire(self) -> LabgridResources:
        self.client.acquire(self.deadline)
        try:
            self.resources = self.client.resources(self.deadline)
        except BaseException:
            with contextlib.suppress(InfrastructureError):
                self.client.release()
            raise
        return self.resources

    def release(self) -> None:
        if self.client.acquired:
            self.client.release()  # its own timeout: also after the run's deadline ran out

    def __enter__(self) -> LabgridResources:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.release()
        else:
            with contextlib.suppress(InfrastructureError):
                self.release()
