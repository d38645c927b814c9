"""EVE's configItems: the whole catalogue (spec §6.1) and the ParseItem rule (spec §6).

EVE treats the configItems list in each EdgeDevConfig as the complete set: an item that is
absent means its default. A bad or out-of-range value keeps the previous value (else the
default) and is reported in configItemStatus; an unknown key is reported there too and
otherwise ignored (P:types/global.go ``ParseItem``, P:cmd/zedagent/parseconfig.go
``parseConfigItems``). Nothing is trimmed and the bool and tri-state spellings are
case-sensitive, so ``" 5"`` and ``"TRUE "`` are errors on a real device.

Only some items change what the model does (timers, the fallback and DPC rules, forced
fallback, the download cost gate…); the rest are accepted and reported exactly as EVE
would, so a scenario can carry a production configuration unchanged.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Mapping

__all__ = [
    "ItemKind",
    "ItemSpec",
    "ItemError",
    "ITEMS",
    "UINT32_MAX",
    "GlobalConfig",
    "validate_item",
    "close_keys",
    "is_known",
    "spec_of",
    "wire_value",
    "UNKNOWN_ITEM_VALUE",
    "BOOL_TRUE",
    "BOOL_FALSE",
]

ItemKind = Literal["int", "bool", "tristate", "string"]
ItemValue = int | str | bool

UINT32_MAX = 2**32 - 1  # "u32" in spec §6.1

# Go's strconv.ParseBool spellings (spec §6.1): nothing else, and no trimming.
BOOL_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
BOOL_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# P:types/types.go ParseTriState: three values, several spellings each (spec §6.1).
_TRISTATE = {
    "none": "none",
    "enabled": "enabled", "enable": "enabled", "on": "enabled",
    "disabled": "disabled", "disable": "disabled", "off": "disabled",
}

Check = Callable[[str], str | None]
"""A string item's validator: the reason a value is refused, or None."""


@dataclass(frozen=True)
class ItemSpec:
    """One configItem: kind, default, bounds (ints) or accepted values (strings), spec §6.1."""

    key: str
    default: ItemValue
    kind: ItemKind = "int"
    min: int | None = None
    max: int | None = None
    check: Check | None = None
    accepts: str = ""
    """What a string item accepts, in words (for hints)."""
    doc: str = ""
    unit: str = "s"

    def hint(self) -> str:
        """What the item accepts, for an error message."""
        if self.kind == "int":
            unit = f" {self.unit}" if self.unit else ""
            return f"{self.key}: an integer from {self.min} to {self.max}{unit}, default {self.default}{unit} (spec §6.1)"
        if self.kind == "bool":
            return f"{self.key} is a boolean: true/false, 1/0, t/f, TRUE/FALSE, True/False (spec §6.1)"
        if self.kind == "tristate":
            return f"{self.key} is one of none, enabled (enable, on), disabled (disable, off); quote on/off in YAML (spec §6.1)"
        return f"{self.key} accepts {self.accepts or 'any text'}, default {self.default!r} (spec §6.1)"


@dataclass(frozen=True)
class ItemError:
    """One configItemStatus error entry: the rejected value and why."""

    key: str
    value: str
    reason: str


# ------------------------------------------------------------------------ string validators --
_LOGRUS = ("panic", "fatal", "error", "warn", "warning", "info", "debug", "trace")
_SYSLOG = ("none", "emerg", "alert", "crit", "critical", "err", "error", "warning", "warn", "notice", "info", "debug", "all")


def _log_level(text: str) -> str | None:
    # P:types/global.go validateLogLevel: none, all or a logrus level (case-insensitive).
    if text in ("none", "all") or text.lower() in _LOGRUS:
        return None
    return f"{text!r} is not a log level (none, all, {', '.join(_LOGRUS)})"


def _syslog_level(text: str) -> str | None:
    # P:types/global.go SyslogKernelLogLevelNum.
    return None if text in _SYSLOG else f"{text!r} is not a syslog level ({', '.join(_SYSLOG)})"


_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_FIELD = re.compile(r"[0-9*/,\-]+")


def _cron(text: str) -> str | None:
    # P:types/global.go cronValidator: empty, or five fields of digits * / - , within range.
    if text == "":
        return None
    fields = text.split(" ")
    if len(fields) != 5:
        return f"{text!r} is not a cron expression of 5 fields"
    for value, (lo, hi) in zip(fields, _CRON_RANGES):
        if not _CRON_FIELD.fullmatch(value):
            return f"cron field {value!r} has characters other than 0-9 * / - ,"
        for number in re.findall(r"[0-9]+", value):
            if not lo <= int(number) <= hi:
                return f"cron field {value!r}: {number} is outside {lo}-{hi}"
    return None


def _base64(text: str) -> str | None:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return f"{text!r} is not valid standard base64"
    return None


def _choice(*values: str) -> Check:
    def check(text: str) -> str | None:
        return None if text in values else f"{text!r} is not one of {', '.join(repr(v) for v in values)}"

    return check


def _file_name(text: str) -> str | None:
    if text == "" or ("/" not in text and "\\" not in text and text not in (".", "..")):
        return None
    return f"{text!r} is not a bare file name"


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*")
_IPV4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")


def _endpoint(scheme: str, allow_ip: bool) -> Check:
    def check(text: str) -> str | None:
        if text == "":
            return None
        host = text
        if text.startswith(f"{scheme}://"):
            host = text[len(scheme) + 3:].split("/", 1)[0].split(":", 1)[0]
        elif "://" in text:
            return f"{text!r}: only {scheme}:// URLs are accepted"
        if _IPV4.fullmatch(host):
            return None if allow_ip else f"{text!r}: an IP address is not accepted for {scheme}"
        return None if _HOST.fullmatch(host) else f"{text!r} is not a host name or {scheme}:// URL"

    return check


# ------------------------------------------------------------------------------- the table --
U32 = UINT32_MAX


def _int(key: str, default: int, lo: int, hi: int, doc: str = "", unit: str = "s") -> ItemSpec:
    return ItemSpec(key=key, default=default, kind="int", min=lo, max=hi, doc=doc, unit=unit)


def _bool(key: str, default: bool, doc: str = "") -> ItemSpec:
    return ItemSpec(key=key, default=default, kind="bool", doc=doc, unit="")


def _tri(key: str, default: str, doc: str = "") -> ItemSpec:
    return ItemSpec(key=key, default=default, kind="tristate", doc=doc, unit="")


def _str(key: str, default: str, check: Check | None = None, accepts: str = "", doc: str = "") -> ItemSpec:
    return ItemSpec(key=key, default=default, kind="string", check=check, accepts=accepts, doc=doc, unit="")


_LOG = "a log level (none, all, panic … trace)"
_SYS = "a syslog level (none, emerg … debug, all)"
_CRON = "a cron expression of 5 fields, or empty"

# spec §6.1 (P:types/global.go NewConfigItemSpecMap). The doc strings of the items the model
# acts on say what it does with them.
_SPECS: tuple[ItemSpec, ...] = (
    # Integers (seconds unless a unit is given).
    _int("timer.config.interval", 60, 5, 86400, "config poll every U[0.3,1] x interval"),
    _int("timer.cert.interval", 86400, 60, U32, "controller certs refetch"),
    _int("timer.metric.diskscan.interval", 300, 5, 3600),
    _int("timer.metric.interval", 60, 5, 3600, "metrics every U[0.3,1] x interval"),
    _int("timer.hardwarehealth.interval", 43200, 21600, U32),
    _int("timer.deviceinfo.interval", 600, 30, U32, "forced device info U[0.8,1.2] x"),
    _int("timer.reboot.no.network", 604800, 120, U32, "reboot on controller loss"),
    _int("timer.update.fallback.no.network", 300, 60, U32, "fallback during update test"),
    _int("timer.test.baseimage.update", 600, 30, 3600, "update test window; config backup"),
    _int("timer.gc.vdisk", 3600, 60, U32),
    _int("timer.defer.content.delete", 0, 0, 86400),
    _int("timer.download.retry", 600, 60, U32, "download retry"),
    _int("timer.download.stalled", 600, 20, U32, "stalled download detection"),
    _int("timer.boot.retry", 600, 10, U32, "retry a failed app boot"),
    _int("timer.port.georedo", 3600, 60, U32),
    _int("timer.port.georetry", 600, 5, U32),
    _int("timer.port.testduration", 30, 10, 3600, "DHCP/IP wait per DPC test"),
    _int("timer.port.testinterval", 300, 300, 3600, "DPC retest"),
    _int("timer.port.testbetterinterval", 600, 0, U32, "retry DPC index 0 (0 disables)"),
    _int("timer.port.timeout", 15, 0, 3600, "controller ping timeout"),
    _int("timer.send.timeout", 120, 0, 3600, "HTTP send timeout"),
    _int("timer.dial.timeout", 10, 0, 3600, "HTTP dial timeout"),
    _int("timer.location.cloud.interval", 3600, 300, U32),
    _int("timer.location.app.interval", 20, 5, 3600),
    _int("timer.ntpsources.interval", 600, 60, U32),
    _int("timer.appcontainer.stats.interval", 300, 1, U32),
    _int("timer.vault.ready.cutoff", 300, 60, U32, "vault -> fallback or maintenance"),
    _int("timer.vault.trim.max.secs", 1800, 0, U32, "0 = no limit"),
    _int("timer.lps.profile.interval", 60, 3, 3600),
    _int("timer.lps.radio.interval", 5, 3, 3600),
    _int("timer.lps.appinfo.interval", 60, 3, 3600),
    _int("timer.lps.devinfo.interval", 60, 3, 3600),
    _int("timer.lps.network.interval", 60, 3, 3600),
    _int("timer.lps.appbootinfo.interval", 60, 3, 3600),
    _int("storage.dom0.disk.minusage.percent", 20, 20, 80, unit="%"),
    _int("storage.dom0.disk.maxusagebytes", 2147483648, 104857600, U32, unit="bytes"),
    _int("storage.zfs.reserved.percent", 20, 1, 99, unit="%"),
    _int("storage.longhorn.disk.reserved.gigabytes", 2, 0, 1048576, "1048576 = EVE override off", unit="GB"),
    _int("force.fallback.counter", 0, 0, U32, "change -> forced fallback", unit=""),
    _int("gogc.memory.limit.bytes", 0, 0, U32, unit="bytes"),
    _int("gogc.percent", 100, 0, 500, "0 = GC off", unit="%"),
    _int("gogc.forced.interval.seconds", 10, 0, 1000, "0 = off"),
    _int("gogc.forced.growth.memory.MiB", 50, 10, 1024, unit="MiB"),
    _int("gogc.forced.growth.memory.percent", 20, 5, 300, unit="%"),
    # EVE's default and minimum is its memory limit at boot; the model has none (0 = not set).
    _int("memory.eve.limit.bytes", 0, 0, U32, "default and minimum: EVE's limit at boot (not modelled)", unit="bytes"),
    _int("memory.eve.limit.MiB", 0, 0, U32, "default and minimum: EVE's limit at boot (not modelled)", unit="MiB"),
    _int("memory.vmm.limit.MiB", 0, 0, 1073741824, "0 = computed overhead", unit="MiB"),
    _int("newlog.gzipfiles.ondisk.maxmegabytes", 2048, 10, U32, unit="MB"),
    _int("network.download.max.cost", 0, 0, 255, "download cost gate (§4)", unit=""),
    _int("blob.download.max.retries", 5, 1, 10, "retries on verify failure", unit=""),
    _int("goroutine.leak.detection.threshold", 5000, 1, U32, unit=""),
    _int("goroutine.leak.detection.check.interval.minutes", 1, 1, U32, unit="min"),
    _int("goroutine.leak.detection.check.window.minutes", 10, 10, U32, unit="min"),
    _int("goroutine.leak.detection.keep.stats.hours", 24, 1, U32, unit="h"),
    _int("goroutine.leak.detection.cooldown.minutes", 5, 1, U32, unit="min"),
    _int("kubernetes.drain.timeout", 24, 1, U32, unit="h"),
    _int("drain.skip.k8sapinotreachable.timeout", 300, 1, U32),
    _int("kubernetes.drain.allnodes.config.multiple", 2, 1, 1000, "x config interval", unit=""),
    _int("log.dedup.window.size", 0, 0, U32, "0 = off", unit=""),
    _int("netdump.topic.preonboard.interval", 3600, 60, U32),
    _int("netdump.topic.postonboard.interval", 86400, 60, U32),
    _int("netdump.topic.maxcount", 10, 1, U32, unit=""),
    _int("msrv.prometheus.metrics.rps", 1, 1, U32, unit=""),
    _int("msrv.prometheus.metrics.burst", 10, 1, U32, unit=""),
    _int("msrv.prometheus.metrics.idletimeout.seconds", 240, 1, U32),
    _int("scep.retry.interval", 300, 60, 3600),
    _int("pnac.dhcp.reacquire.max.retries", 4, 0, 8, unit=""),
    # Booleans. debug.enable.{usb,vga,console} default to false in a controller's config (live or
    # saved) and true only in bootstrap config (parseconfig.go parseConfigItems); this table holds
    # the controller's defaults, which is what a scenario's config is.
    _bool("debug.enable.usb", False),
    _bool("debug.enable.vga", False),
    _bool("debug.enable.console", False),
    _bool("internal-memory-monitor.store.enabled", True),
    _bool("internal-memory-monitor.analyze.enabled", True),
    _bool("network.switch.enable.arpsnoop", True),
    _bool("dhcp.enable.vendorclassid", True),
    _bool("debug.qemu.process.core", True),
    _bool("debug.qemu.guest.core", True),
    _bool("vector.enabled", True),
    _bool("netdump.enable", True),
    _bool("app.enable.tcp.mss.clamping", True),
    _bool("app.allow.vnc", False),
    _bool("memory.apps.ignore.check", False),
    _bool("storage.apps.ignore.disk.check", False),
    _bool("newlog.allow.fastupload", False),
    _bool("debug.disable.dhcp.all-ones.netmask", False),
    _bool("process.cloud-init.multipart", False),
    _bool("debug.enable.vnc.shim.vm", False),
    _bool("wwan.query.visible.providers", False),
    _bool("wwan.modem.recovery.watchdog", False),
    _bool("wwan.modem.recovery.reload.drivers", False),
    _bool("wwan.modem.recovery.restart.modemmanager", False),
    _bool("network.local.legacy.mac.address", False),
    _bool("memory-monitor.enabled", False),
    _bool("debug.enable.efi", False),
    _bool("debug.qemu.process.core.guest.ram", False),
    _bool("debug.qemu.pause.on.crash", False),
    _bool("debug.qemu.gdb", False),
    _bool("debug.qemu.igpu.no.mmap", False),
    _bool("datastore.http.security.allowinsecureauth", False),
    _bool("netdump.downloader.with.pcap", False),
    _bool("netdump.downloader.http.with.fieldvalue", False),
    # Tri-states.
    _tri("network.fallback.any.eth", "disabled", "last-resort DPC (DHCP on all Ethernet ports)"),
    _tri("maintenance.mode", "none"),
    _tri("airgap.mode", "none"),
    # Strings.
    _str("debug.default.loglevel", "info", _log_level, _LOG),
    _str("debug.default.remote.loglevel", "info", _log_level, _LOG),
    _str("debug.syslog.loglevel", "info", _syslog_level, _SYS),
    _str("debug.syslog.remote.loglevel", "info", _syslog_level, _SYS),
    _str("debug.kernel.loglevel", "info", _syslog_level, _SYS),
    _str("debug.kernel.remote.loglevel", "info", _syslog_level, _SYS),
    _str("debug.tui.loglevel", "info"),
    _str("debug.enable.ssh", "", accepts="any text (authorized_keys)"),
    _str("debug.qemu.trace.events", ""),
    _str("app.fml.resolution", ""),
    _str("edgeview.authen.publickey", ""),
    _str("log.count.filenames", ""),
    _str("log.filter.filenames", ""),
    _str("kubernetes.vmi.deschedule.events", ""),
    _str("app.boot.order", "", _choice("", "usb", "nousb"), "'', usb or nousb"),
    _str("igpu.gop", "", _file_name, "a bare file name"),
    _str("vector.config", "", _base64, "standard base64"),
    _str("k3s.config.override", "", _base64, "standard base64"),
    _str("k3s.version", "", accepts="a version (checked by EVE-k only)"),
    _str("diag.probe.remote.http.endpoint", "www.google.com", _endpoint("http", True), "empty, a host or an http:// URL"),
    _str("diag.probe.remote.https.endpoint", "www.google.com", _endpoint("https", False), "empty, a host or an https:// URL (no IP)"),
    _str("timer.vault.trim.cron", "0 2 * * 6,0", _cron, _CRON),
    _str("timer.zfs.pool.trim.cron", "0 3 * * 6,0", _cron, _CRON),
    _str("storage.longhorn.snapshot.cron", "0 0 * * *", _cron, _CRON),
    _str(
        "storage.longhorn.node-drain-policy",
        "block-for-eviction-if-contains-last-replica",
        _choice("block-for-eviction", "block-for-eviction-if-contains-last-replica", "allow-if-replica-is-stopped", "always-allow"),
        "block-for-eviction, block-for-eviction-if-contains-last-replica, allow-if-replica-is-stopped or always-allow",
    ),
)

ITEMS: dict[str, ItemSpec] = {spec.key: spec for spec in _SPECS}
_MISSING = object()

# P:types/global.go parseAgentSettingKey: per-agent log levels, new and legacy spellings. A
# global key of the same name (debug.default.loglevel …) is a global key, not an agent's.
_AGENT_KEY = re.compile(r"agent\.([^.]+)\.debug\.(remote\.)?loglevel|debug\.([^.]+)\.(remote\.)?loglevel")


def _agent_spec(key: str) -> ItemSpec | None:
    match = _AGENT_KEY.fullmatch(key)
    if match is None:
        return None
    return ItemSpec(key=key, default="info", kind="string", check=_log_level, accepts=_LOG, doc="per-agent log level", unit="")


def spec_of(key: str) -> ItemSpec | None:
    """The item ``key`` names (a per-agent key included), or None for a key EVE does not know."""
    return ITEMS.get(key) or _agent_spec(key)


def is_known(key: str) -> bool:
    return spec_of(key) is not None


def close_keys(key: str, n: int = 3) -> list[str]:
    """Known keys similar to ``key`` (for did-you-mean hints)."""
    return difflib.get_close_matches(key, list(ITEMS), n=n, cutoff=0.6)


def wire_value(value: ItemValue) -> str:
    """The string a controller puts on the wire for a scenario value (EVE's configItem values are text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


UNKNOWN_ITEM_VALUE = "UnknownType(0)"
"""The value EVE reports in configItemStatus for a key it does not know: ParseItem hands back an
empty item value, whose text form names its invalid type (P:types/global.go ``ParseItem``,
``parseAgentItem``, ``ConfigItemValue.StringValue``)."""


def _parse(spec: ItemSpec, value: ItemValue) -> tuple[ItemValue | None, str | None]:
    """Parse ``value`` per ``spec``; return (parsed, None) or (None, reason). Spec §6/§6.1."""
    if spec.kind == "int":
        if isinstance(value, bool):
            return None, "expected an integer, got a boolean"
        if isinstance(value, int):
            number = value
        else:
            text = str(value)
            # strconv.ParseUint(text, 10, 32): decimal digits only, no sign, no spaces.
            if not (text.isascii() and text.isdigit()):
                return None, f"{value!r} is not an unsigned decimal integer (EVE trims nothing)"
            number = int(text)
        if number < 0 or number > UINT32_MAX:
            return None, f"{number} is outside the uint32 range"
        unit = f" {spec.unit}" if spec.unit else ""
        if spec.min is not None and number < spec.min:
            return None, f"minimum is {spec.min}{unit} (spec §6.1)"
        if spec.max is not None and number > spec.max:
            return None, f"maximum is {spec.max}{unit} (spec §6.1)"
        return number, None
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value, None
        text = str(value)
        if text in BOOL_TRUE:
            return True, None
        if text in BOOL_FALSE:
            return False, None
        return None, f"{value!r} is not a boolean (strconv.ParseBool)"
    if isinstance(value, bool):
        # YAML reads on/off/yes/no as booleans; EVE gets "true"/"false", which only bool items take.
        return None, f"{wire_value(value)!r} is not accepted (in YAML, quote the value: '{'on' if value else 'off'}')"
    text = str(value)
    if spec.kind == "tristate":
        canonical = _TRISTATE.get(text)
        if canonical is None:
            return None, f"{text!r} is not one of none, enabled, enable, on, disabled, disable, off"
        return canonical, None
    reason = spec.check(text) if spec.check is not None else None
    return (None, reason) if reason else (text, None)


def validate_item(key: str, value: ItemValue) -> str | None:
    """An error message for ``key=value`` when EVE would refuse the value, else None.

    An unknown key is reported too (EVE records it in configItemStatus and ignores it); callers
    that only warn about unknown keys check :func:`is_known` first."""
    spec = spec_of(key)
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

    values: dict[str, ItemValue] = field(default_factory=dict)
    """The items the last config set (a key absent here holds its default): sparse, because a
    fleet of a million nodes carries one of these each and most configs set a handful of keys."""
    errors: list[ItemError] = field(default_factory=list)  # last apply(), for configItemStatus

    @classmethod
    def defaults(cls) -> "GlobalConfig":
        """A config holding every default value (spec §6)."""
        return cls()

    def apply(self, items: Mapping[str, ItemValue]) -> list[ItemError]:
        """Apply a full configItems set; return (and keep) the error entries.

        Valid values are taken; an invalid value keeps the previous value (which is the
        default if never set); unknown keys are ignored with an error; known keys absent
        from ``items`` revert to their default; per-agent keys are kept while present.
        """
        errors: list[ItemError] = []
        new: dict[str, ItemValue] = {}  # a known key absent from ``items`` reverts to its default (spec §6)
        for key, raw in items.items():
            spec = spec_of(key)
            if spec is not None:
                self._take(spec, raw, new, errors)
                continue
            hint = close_keys(key)
            reason = "unknown config item" + (f"; did you mean {', '.join(hint)}?" if hint else "")
            errors.append(ItemError(key, wire_value(raw), reason))
        self.values = new
        self.errors = errors
        return list(errors)

    def _take(self, spec: ItemSpec, raw: ItemValue, new: dict[str, ItemValue], errors: list[ItemError]) -> None:
        parsed, reason = _parse(spec, raw)
        if reason is None and parsed is not None:
            new[spec.key] = parsed
        else:
            # ParseItem: keep the previous value, else the default (spec §6).
            if spec.key in self.values:
                new[spec.key] = self.values[spec.key]
            errors.append(ItemError(spec.key, wire_value(raw), reason or "invalid value"))

    def status(self) -> dict[str, tuple[str, str]]:
        """configItemStatus.configItems of the last :meth:`apply` (spec §6): every item that config
        carried, key -> (the value in use as text, the error or ""), as zedagent reports them
        (P:cmd/zedagent/parseconfig.go ``parseConfigItems``, P:cmd/zedagent/reportinfo.go
        ``createConfigItemStatus``). An item refused keeps its previous value (else the default);
        an unknown key has no value (:data:`UNKNOWN_ITEM_VALUE`)."""
        out = {key: (wire_value(value), "") for key, value in self.values.items()}
        for e in self.errors:
            spec = spec_of(e.key)
            value = UNKNOWN_ITEM_VALUE if spec is None else wire_value(self.values.get(e.key, spec.default))
            out[e.key] = (value, f"value {e.value!r}: {e.reason}")
        return dict(sorted(out.items()))

    def get(self, key: str) -> ItemValue:
        """Current value of ``key``; KeyError for a key EVE does not know. (The node reads its
        timers here millions of times in a fleet run: a set value first, then the table.)"""
        value = self.values.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        spec = ITEMS.get(key) or _agent_spec(key)
        if spec is None:
            raise KeyError(key)
        return spec.default

    def __getitem__(self, key: str) -> ItemValue:
        return self.get(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and is_known(key)

    def __iter__(self) -> Iterator[str]:
        return iter(ITEMS)

    def is_default(self, key: str) -> bool:
        """True when ``key`` currently holds its default value."""
        spec = spec_of(key)
        return spec is not None and self.get(key) == spec.default

    def as_dict(self) -> dict[str, ItemValue]:
        """Copy of all current values (for reports)."""
        return {key: self.get(key) for key in ITEMS}
