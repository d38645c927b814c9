"""Timing-relevant EVE configItems (spec §6) and the ParseItem rule.

EVE treats the configItems list in each EdgeDevConfig as the complete set:
an item that is absent means its default. A bad or out-of-range value keeps
the previous value (else the default) and is reported in configItemStatus
(spec §6, P:types/global.go ``ParseItem``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterator, Literal, Mapping

__all__ = [
    "ItemKind",
    "ItemSpec",
    "ItemError",
    "ITEMS",
    "UINT32_MAX",
    "GlobalConfig",
    "validate_item",
    "close_keys",
]

ItemKind = Literal["int", "enum", "bool"]
ItemValue = int | str | bool

UINT32_MAX = 2**32 - 1  # "2^32-1" in spec §6


@dataclass(frozen=True)
class ItemSpec:
    """Definition of one configItem: default, bounds and kind (spec §6)."""

    key: str
    default: ItemValue
    min: int | None = None
    max: int | None = None  # None = no maximum ("–" in spec §6)
    kind: ItemKind = "int"
    allowed: tuple[str, ...] = ()  # valid values for kind="enum"
    doc: str = ""
    unit: str = "s"


@dataclass(frozen=True)
class ItemError:
    """One configItemStatus error entry: the rejected value and why."""

    key: str
    value: str
    reason: str


def _int(key: str, default: int, lo: int, hi: int | None, doc: str, unit: str = "s") -> ItemSpec:
    return ItemSpec(key=key, default=default, min=lo, max=hi, kind="int", doc=doc, unit=unit)


# spec §6 table (P:types/global.go:1147-1314).
_SPECS: tuple[ItemSpec, ...] = (
    _int("timer.config.interval", 60, 5, 86400, "config poll every U[0.3,1]x interval"),
    _int("timer.metric.interval", 60, 5, 3600, "metrics every U[0.3,1]x interval"),
    _int("timer.deviceinfo.interval", 600, 30, UINT32_MAX, "forced device info U[0.8,1.2]x"),
    _int("timer.cert.interval", 86400, 60, None, "controller certs refetch"),
    _int("timer.send.timeout", 120, 0, 3600, "HTTP send timeout"),
    _int("timer.dial.timeout", 10, 0, 3600, "HTTP dial timeout"),
    _int("timer.reboot.no.network", 604800, 120, None, "reboot on controller loss"),
    _int("timer.update.fallback.no.network", 300, 60, None, "fallback during update test"),
    _int("timer.test.baseimage.update", 600, 30, 3600, "update test window; config backup"),
    _int("timer.vault.ready.cutoff", 300, 60, None, "vault -> fallback or maintenance"),
    _int("timer.port.testinterval", 300, 300, 3600, "DPC retest"),
    _int("timer.port.testbetterinterval", 600, 0, None, "retry DPC index 0 (0 disables)"),
    _int("timer.port.testduration", 30, 10, 3600, "DHCP/IP wait per DPC test"),
    _int("timer.port.timeout", 15, 0, 3600, "controller ping timeout"),
    _int("timer.download.retry", 600, 60, None, "download retry"),
    _int("timer.download.stalled", 600, 20, None, "stalled download detection"),
    _int("blob.download.max.retries", 5, 1, 10, "retries on verify failure", unit=""),
    _int("timer.boot.retry", 600, 10, None, "retry a failed app boot"),
    _int("force.fallback.counter", 0, 0, UINT32_MAX, "change -> forced fallback", unit=""),
    ItemSpec(
        key="network.fallback.any.eth",
        default="disabled",
        kind="enum",
        allowed=("enabled", "disabled"),
        doc="last-resort DPC (DHCP on all Ethernet ports)",
        unit="",
    ),
)

ITEMS: dict[str, ItemSpec] = {spec.key: spec for spec in _SPECS}

_TRUE = frozenset({"1", "t", "true"})  # Go strconv.ParseBool spellings
_FALSE = frozenset({"0", "f", "false"})


def close_keys(key: str, n: int = 3) -> list[str]:
    """Known keys similar to ``key`` (for did-you-mean hints)."""
    return difflib.get_close_matches(key, list(ITEMS), n=n, cutoff=0.6)


def _unit(spec: ItemSpec) -> str:
    return f" {spec.unit}" if spec.unit else ""


def _parse(spec: ItemSpec, value: ItemValue) -> tuple[ItemValue | None, str | None]:
    """Parse ``value`` per ``spec``; return (parsed, None) or (None, reason)."""
    if spec.kind == "int":
        if isinstance(value, bool):
            return None, "expected an integer, got a boolean"
        if isinstance(value, int):
            number = value
        else:
            text = str(value).strip()
            # EVE parses unsigned decimal integers (strconv.ParseUint).
            if not (text.isascii() and text.isdigit()):
                return None, f"{value!r} is not a non-negative integer"
            number = int(text)
        if number < 0 or number > UINT32_MAX:
            return None, f"{number} is outside the uint32 range"
        if spec.min is not None and number < spec.min:
            return None, f"minimum is {spec.min}{_unit(spec)} (spec §6)"
        if spec.max is not None and number > spec.max:
            return None, f"maximum is {spec.max}{_unit(spec)} (spec §6)"
        return number, None
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value, None
        text = str(value).strip().lower()
        if text in _TRUE:
            return True, None
        if text in _FALSE:
            return False, None
        return None, f"{value!r} is not a boolean"
    text = str(value).strip()
    if text in spec.allowed:
        return text, None
    return None, f"{value!r} is not one of {', '.join(spec.allowed)} (spec §6)"


def validate_item(key: str, value: ItemValue) -> str | None:
    """Return an error message for ``key=value``, or None when EVE would accept it."""
    spec = ITEMS.get(key)
    if spec is None:
        hint = close_keys(key)
        suffix = f"; did you mean {', '.join(hint)}?" if hint else ""
        return f"unknown config item {key!r}{suffix}"
    _, reason = _parse(spec, value)
    if reason is None:
        return None
    return f"{key}={value!r}: {reason}"


@dataclass
class GlobalConfig:
    """Current configItem values of one device, updated with EVE's ParseItem rule."""

    values: dict[str, ItemValue] = field(default_factory=lambda: {k: s.default for k, s in ITEMS.items()})
    errors: list[ItemError] = field(default_factory=list)  # last apply(), for configItemStatus

    @classmethod
    def defaults(cls) -> "GlobalConfig":
        """A config holding every default value (spec §6)."""
        return cls()

    def apply(self, items: Mapping[str, ItemValue]) -> list[ItemError]:
        """Apply a full configItems set; return (and keep) the error entries.

        Valid values are taken; an invalid value keeps the previous value
        (which is the default if never set); unknown keys are ignored with an
        error; known keys absent from ``items`` revert to their default.
        """
        errors: list[ItemError] = []
        new: dict[str, ItemValue] = {}
        for key, spec in ITEMS.items():
            if key not in items:
                new[key] = spec.default  # absent item means default (spec §6)
                continue
            raw = items[key]
            parsed, reason = _parse(spec, raw)
            if reason is None and parsed is not None:
                new[key] = parsed
            else:
                # ParseItem: keep the previous value, else the default (spec §6).
                new[key] = self.values.get(key, spec.default)
                errors.append(ItemError(key, str(raw), reason or "invalid value"))
        for key, raw in items.items():
            if key not in ITEMS:
                hint = close_keys(key)
                reason = "unknown config item" + (f"; did you mean {', '.join(hint)}?" if hint else "")
                errors.append(ItemError(key, str(raw), reason))
        self.values = new
        self.errors = errors
        return list(errors)

    def get(self, key: str) -> ItemValue:
        """Current value of ``key``; KeyError for an unknown key."""
        if key not in ITEMS:
            raise KeyError(key)
        return self.values.get(key, ITEMS[key].default)

    def __getitem__(self, key: str) -> ItemValue:
        return self.get(key)

    def __contains__(self, key: object) -> bool:
        return key in ITEMS

    def __iter__(self) -> Iterator[str]:
        return iter(ITEMS)

    def is_default(self, key: str) -> bool:
        """True when ``key`` currently holds its default value."""
        return self.get(key) == ITEMS[key].default

    def as_dict(self) -> dict[str, ItemValue]:
        """Copy of all current values (for reports)."""
        return {key: self.get(key) for key in ITEMS}
