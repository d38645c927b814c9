"""The lab file: which physical boards a lab has and how eden reaches each one.

The pydantic models below are the file format: every field is a YAML key, and every model refuses
keys it does not know. Checks that need more than one file (the hardware profile a place names)
are made by :mod:`eden.lab.load`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from eden.errors import HintedValueError
from eden.units import Duration

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
"""A lab or place name: lower case, so it is the same word in a shell, a URL and a file name."""

POWER_KINDS = ("pdudaemon", "command", "manual")
CONSOLE_KINDS = ("serial", "network")
EXACTLY_ONE = "exactly one of"
"""Start of the message for a block with no or several driver kinds; the loader points it at the key."""
LABGRID_OWNS = "a labgrid place gets its"
"""Start of the message for ``power:``/``console:`` beside ``labgrid:``; the loader points it at the key."""
AT_KEY = (EXACTLY_ONE, LABGRID_OWNS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise HintedValueError(f"'{text}' is not HOST:PORT", "e.g. 192.168.10.1:8443 (port 0 picks a free one)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise HintedValueError(f"'{text}': an IPv6 address needs brackets", "e.g. [fd00::1]:8443")
    value = int(port)
    if not 0 <= value <= 65535:
        raise ValueError(f"port {value} in '{text}' is out of range: 0 to 65535")
    return host, value


def _check_url(text: str, schemes: tuple[str, ...], *, need_port: bool) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"'{text}' is not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        got = f"'{parts.scheme}'" if parts.scheme else "no scheme"
        raise HintedValueError(f"URL '{text}' has {got}; expected {' or '.join(schemes)}",
                               f"e.g. {schemes[0]}://host:{16421 if schemes[0].startswith('http') else 3001}")
    if not parts.hostname:
        raise ValueError(f"URL '{text}' has no host")
    if need_port and port is None:
        raise HintedValueError(f"URL '{text}' has no port", f"e.g. {parts.scheme}://{parts.hostname}:3001")
    return text


def _bool_keys(data: object) -> object:
    """YAML 1.1 reads the keys ``on:`` and ``off:`` as booleans; give them back their names."""
    if isinstance(data, dict):
        names = {True: "on", False: "off"}
        return {names.get(k, k) if isinstance(k, bool) else k: v for k, v in data.items()}
    return data


class Controller(_Strict):
    """Where eden's controller listens, and the address the boards are told to dial."""

    listen: str
    """HOST:PORT eden's controller binds; port 0 picks a free one."""
    advertise: str | None = None
    """Host name or address the boards dial (certificate SAN and CONFIG server); default: listen's host."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        split_host_port(v)
        return v

    @property
    def host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.listen)[1]

    @property
    def advertised_host(self) -> str:
        return self.advertise or self.host


class Leases(_Strict):
    db: str | None = None
    """SQLite file of the lab's leases; relative to the lab file's directory. Default: .eden-lab.sqlite there."""
    ttl: Duration = Field(default=900.0, ge=5)
    """Seconds a lease lives without a heartbeat: how long a crashed holder keeps a board from others."""
    heartbeat: Duration | None = Field(default=None, gt=0)
    """Seconds between heartbeats of a held lease; default ttl/3, so two can be missed."""

    @field_validator("heartbeat")
    @classmethod
    def _below_ttl(cls, v: float | None, info: ValidationInfo) -> float | None:
        ttl = info.data.get("ttl")
        if v is not None and ttl is not None and v >= ttl:
            raise HintedValueError(f"heartbeat ({v:g}s) must be less than ttl ({ttl:g}s)",
                                   "a lease would expire between two heartbeats; ttl/3 leaves room for two missed ones")
        return v

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat if self.heartbeat is not None else self.ttl / 3


class Health(_Strict):
    every: Duration = Field(default=86400.0, gt=0)
    """Seconds between scheduled health runs of a place."""
    scenarios: dict[str, str] = Field(default_factory=dict)
    """Hardware profile name -> health scenario path; default scenarios/health-<profile>.yaml."""


class PduDaemon(_Strict):
    """A PDU outlet switched through a PDUDaemon server."""

    url: str
    hostname: str
    """The PDU's name in PDUDaemon's configuration."""
    port: int | str
    """Outlet number, or a PDUDaemon port name."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("http", "https"), need_port=False)


class CommandPower(_Strict):
    """Shell commands that switch the board (a relay script, an IPMI call)."""

    on: str
    off: str
    cycle: str | None = None
    """Optional; without it a cycle is off, a pause, on."""
    timeout: Duration = Field(default=30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _on_off(cls, data: object) -> object:
        return _bool_keys(data)


def _exactly_one(block: BaseModel, kinds: tuple[str, ...], name: str) -> None:
    """A driver block names exactly one kind of driver (the loader points the error at its key)."""
    given = [k for k in kinds if getattr(block, k) is not None]
    if len(given) != 1:
        got = "none" if not given else ", ".join(given)
        raise HintedValueError(f"{EXACTLY_ONE} {', '.join(kinds)} is needed under '{name}' (got {got})")


def _bare_manual(data: object) -> object:
    """``manual:`` alone (YAML null) is a person with the default prompt."""
    if isinstance(data, dict) and "manual" in data and data["manual"] is None:
        return {**data, "manual": {}}
    return data


class ManualPower(_Strict):
    """A person switches the board when eden asks."""

    prompt: str | None = None


class Power(_Strict):
    pdudaemon: PduDaemon | None = None
    command: CommandPower | None = None
    manual: ManualPower | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_manual(cls, data: object) -> object:
        return _bare_manual(data)

    @model_validator(mode="after")
    def _one_kind(self) -> Power:
        _exactly_one(self, POWER_KINDS, "power")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in POWER_KINDS if getattr(self, k) is not None)


class SerialConsole(_Strict):
    device: str
    """The serial device, best by a stable name (/dev/serial/by-id/...)."""
    baud: int = Field(default=115200, gt=0)


class NetworkConsole(_Strict):
    url: str
    """tcp://host:port (raw) or rfc2217://host:port (ser2net telnet mode)."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, ("tcp", "rfc2217"), need_port=True)


class Console(_Strict):
    serial: SerialConsole | None = None
    network: NetworkConsole | None = None
    char_delay_ms: float = Field(default=0.0, ge=0, le=1000)
    """Pause after each character written: slow UARTs and U-Boot drop input that comes too fast."""
    reattach: Duration = Field(default=30.0, ge=0)
    """Seconds to wait for a vanished serial device (a USB adapter re-enumerating) to come back."""
    first_output: Duration = Field(default=60.0, gt=0)
    """Seconds from a power-on to the board's first console output; none by then and the power-on
    is not confirmed (the PDU's word is not taken for it): the place is broken for the run."""

    @model_validator(mode="after")
    def _one_kind(self) -> Console:
        _exactly_one(self, CONSOLE_KINDS, "console")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in CONSOLE_KINDS if getattr(self, k) is not None)


class Ssh(_Strict):
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    key: str | None = None
    """Private key file; relative to the lab file's directory."""


class LinkCommand(_Strict):
    """Shell commands that cut and restore one of the board's network ports (a managed switch)."""

    down: str
    up: str
    timeout: Duration = Field(default=30.0, gt=0)

    @field_validator("down", "up")
    @classmethod
    def _has_port(cls, v: str) -> str:
        if "{port}" not in v:
            raise HintedValueError(f"the command '{v}' has no {{port}} placeholder",
                                   "eden puts the board's port name there, e.g. 'switchctl port {port} down'")
        return v


class Link(_Strict):
    command: LinkCommand


class ManualMedia(_Strict):
    """A person writes the image: eden prepares it in the run's folder and asks at the terminal."""

    prompt: str | None = None
    """What to ask; may use ``{place}`` and ``{image}`` (the file to write)."""
    timeout: Duration = Field(default=1800.0, gt=0)
    """How long to wait for the person's Enter (a card written by hand takes minutes)."""


MEDIA_KINDS = ("device", "manual")


class Media(_Strict):
    """The board's storage as the lab host sees it, so an image can be written to it: a device the
    host writes, or a person who does (a desk setup with the board's SD card or USB disk)."""

    device: str | None = None
    """A block device or an image file; relative to the lab file's directory."""
    manual: ManualMedia | None = None
    to_host: str | None = None
    """Shell command that switches an SD-mux to the host."""
    to_board: str | None = None
    """Shell command that switches it back to the board."""

    @model_validator(mode="before")
    @classmethod
    def _bare_manual(cls, data: object) -> object:
        return _bare_manual(data)

    @model_validator(mode="after")
    def _one_kind(self) -> Media:
        _exactly_one(self, MEDIA_KINDS, "media")
        return self


class Tamper(_Strict):
    """Shell commands that change what a powered-off board boots, per tamper stage (spec §5): a
    flash programmer rewriting its firmware, a changed boot entry, a rootfs block, a CONFIG file.
    Run while the board is off, before its next power-on; a stage without a command is refused
    at validation for this place."""

    firmware: str | None = None
    bootloader: str | None = None
    rootfs: str | None = None
    config: str | None = None
    timeout: Duration = Field(default=120.0, gt=0)

    def stages(self) -> list[str]:
        return [s for s in ("firmware", "bootloader", "rootfs", "config") if getattr(self, s)]


class Labgrid(_Strict):
    """The place is a place of a labgrid coordinator (https://github.com/labgrid-project/labgrid):
    eden locks it there (labgrid's own lock, seen by every host of the lab) and takes its power and
    console from the resources labgrid's exporters publish for it."""

    coordinator: str
    """HOST:PORT of the labgrid coordinator (labgrid-client's ``-x``)."""
    place: str = Field(min_length=1, max_length=128, pattern=r"^[^\s/]+$")
    """The place's name in labgrid (its own namespace, not eden's place name)."""
    timeout: Duration = Field(default=30.0, gt=0)
    """Seconds each labgrid-client call may take; past it the call is killed and the place is broken."""

    @field_validator("coordinator")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, port = split_host_port(v)
        if port == 0:
            raise HintedValueError(f"'{v}': a coordinator needs a real port", "labgrid's default is 20408")
        return v


class Place(_Strict):
    """One board on one bench: its hardware profile and the drivers that reach it."""

    profile: str
    """Hardware profile name (hw_profiles/)."""
    tags: list[Name] = Field(default_factory=list)
    serial: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[!-~]+$")
    """The board's hardware serial as it reports it at registration (on x86 the SMBIOS system
    serial, ``dmidecode -s system-serial-number``): the controller pre-registers this one. An EVE
    board needs it (EVE registers with its hardware serial, not one eden makes up); a board
    running eden's reference image gets eden's own (profile-device) when it is not given."""
    power: Power | None = None
    console: Console | None = None
    ssh: Ssh | None = None
    link: Link | None = None
    media: Media | None = None
    tamper: Tamper | None = None
    timing_scale: float = Field(default=1.0, ge=1.0, le=10.0)
    """Scenario deadlines on this place are stretched by this factor: 1 for a real board; a
    stand-in VM under TCG uses the qemu backend's factor (docs/board.md "Stand-in boards")."""
    controller_hosts: dict[str, str] = Field(default_factory=dict)
    """Per network port, the address the board dials the controller at where it is not
    ``controller.advertise`` (ports on different lab networks; a stand-in VM's user networks)."""
    labgrid: Labgrid | None = None
    """A place of a labgrid coordinator: power and console come from its exported resources."""

    @field_validator("labgrid")
    @classmethod
    def _labgrid_owns_power_console(cls, v: Labgrid | None, info: ValidationInfo) -> Labgrid | None:
        given = [k for k in ("power", "console") if info.data.get(k) is not None]
        if v is not None and given:
            raise HintedValueError(f"{LABGRID_OWNS} power and console from labgrid's exporter, "
                                   "so " + " and ".join(f"'{k}'" for k in given) + " cannot be beside 'labgrid'",
                                   "drop the block (export the port with labgrid instead), or drop 'labgrid:' "
                                   "to drive the board from this file")
        return v


class LabFile(_Strict):
    lab: Name
    controller: Controller
    leases: Leases = Leases()
    health: Health = Health()
    places: dict[Name, Place] = Field(min_length=1)


def place_methods(place: Place) -> frozenset[str]:
    """The device-port methods a board can perform, from its drivers (eden.backends.ports.DEVICE_METHODS).

    Only what the lab's hardware does on command: power, links, and the tamper stages it has
    commands for; no hang, crash or fault injection inside a board."""
    methods: set[str] = set()
    if place.power is not None or place.labgrid is not None:  # labgrid places export a power port
        methods |= {"power_on", "power_off", "power_cycle"}
    if place.link is not None:
        methods.add("set_links")
    if place.tamper is not None and place.tamper.stages():
        methods.add("tamper")
    return frozenset(methods)


def place_drivers(place: Place) -> dict[str, str]:
    """Which driver serves each part of a place, for display: {"power": "pdudaemon", ...}."""
    drivers: dict[str, str] = {}
    if place.labgrid is not None:
        drivers["labgrid"] = f"{place.labgrid.place}@{place.labgrid.coordinator}"
        drivers["power"] = drivers["console"] = "labgrid"
    if place.power is not None:
        drivers["power"] = place.power.kind
    if place.console is not None:
        drivers["console"] = place.console.kind
    if place.ssh is not None:
        drivers["ssh"] = "ssh"
    if place.link is not None:
        drivers["link"] = "command"
    if place.media is not None:
        drivers["media"] = "manual" if place.media.manual is not None else "device"
    if place.tamper is not None and place.tamper.stages():
        drivers["tamper"] = "command (" + ", ".join(place.tamper.stages()) + ")"
    return drivers


def lab_json_schema() -> dict[str, object]:
    """The lab file's JSON Schema (``eden schema --lab``)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **LabFile.model_json_schema()}
