"""Value types for scenario and profile files: durations, sizes, fractions, rates.

Each ``parse_*`` function accepts what a person would write in YAML and raises
``ValueError`` with a message that says what to write instead; the matching
``Annotated`` types plug them into pydantic models.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

# ----------------------------------------------------------------------------- durations

_DURATION_UNITS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"\s*({_NUM})\s*(ms|d|h|m|s)")
DURATION_PATTERN = rf"^\s*(?:{_NUM}\s*(?:ms|d|h|m|s)?\s*)+$"
_DURATION_HELP = "write e.g. 30s, 10m, 1h30m, 250ms or a number of seconds"


def _text(value: object) -> str:
    """The value as the user wrote it in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(getattr(value, "source", None) or value)


def _number(value: object) -> float | None:
    """A finite real number from an int/float (not bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plain_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"250ms"``, ``"2d"``, ``"1.5h"``."""
    bad = ValueError(f"'{_text(value)}' is not a duration; {_DURATION_HELP}")
    number = _number(value)
    if number is None and isinstance(value, str):
        text = value.strip()
        number = _plain_number(text)
        if number is None and text:
            number = _compound_duration(text)
    if number is None:
        raise bad
    if number < 0:
        raise ValueError(f"'{_text(value)}' is negative; a duration must be 0 or more")
    return number


def _compound_duration(text: str) -> float | None:
    """'1h30m' etc.: units in decreasing order, each at most once."""
    total, pos, last_rank = 0.0, 0, -1
    ranks = ["d", "h", "m", "s", "ms"]
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        rank = ranks.index(match.group(2))
        if rank <= last_rank:
            return None
        last_rank = rank
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def format_duration(seconds: float) -> str:
    """Compact form: 1h30m, 250ms, 45s, 2d3h, 1.5s."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    ms_total = round(seconds * 1000)
    days, rest = divmod(ms_total, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if rest:
        parts.append(f"{rest // 1000}s" if rest % 1000 == 0 else f"{rest / 1000:g}s")
    return "".join(parts)


# ----------------------------------------------------------------------------- bytes

_BYTES = re.compile(rf"^({_NUM})\s*([kmgtpe]?)(ib|b)?$", re.IGNORECASE)
BYTES_PATTERN = r"^\s*(?:\d+(?:\.\d*)?|\.\d+)\s*(?:[KkMmGgTtPpEe](?:i?[Bb])?|[Bb])?\s*$"
_PREFIX = "kmgtpe"
_BYTES_HELP = "write e.g. 512M, 4G, 1.5G, 64K (binary), 4GB (decimal) or a number of bytes"


def parse_bytes(value: object) -> int:
    """Bytes from ``4096``, ``"64K"``, ``"512M"``, ``"1.5G"``, ``"4GiB"`` (binary) or ``"4GB"`` (decimal)."""
    bad = ValueError(f"'{_text(value)}' is not a size; {_BYTES_HELP}")
    number = _number(value)
    if number is None and isinstance(value, str):
        match = _BYTES.match(value.strip())
        if match is None:
            raise bad
        number = float(match.group(1))
        prefix, suffix = match.group(2).lower(), (match.group(3) or "").lower()
        if suffix == "ib" and not prefix:
            raise bad
        if prefix:
            power = _PREFIX.index(prefix) + 1
            number *= (1000**power) if suffix == "b" else (1024**power)
    if number is None:
        raise bad
    if number < 0:
        raise ValueError(f"'{_text(value)}' is negative; a size must be 0 or more")
    return round(number)


def format_bytes(n: float) -> str:
    """Binary-unit form that parse_bytes reads back: 4G, 512M, 1.5G, 100B."""
    if n < 0:
        return "-" + format_bytes(-n)
    for power in range(len(_PREFIX), 0, -1):
        unit = 1024**power
        if n >= unit:
            return f"{round(n / unit, 2):g}{_PREFIX[power - 1].upper()}"
    return f"{round(n):d}B"


# ----------------------------------------------------------------------------- fractions

_FRACTION_HELP = "is not a fraction between 0 and 1 (or 0%..100%)"


def parse_fraction(value: object) -> float:
    """A probability/ratio in [0, 1] from ``0.02``, ``1``, ``"2%"``, ``"99.5%"``."""
    bad = ValueError(f"'{_text(value)}' {_FRACTION_HELP}")
    number = _number(value)
    if number is None and isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            percent = _plain_number(text[:-1].strip())
            number = percent / 100 if percent is not None else None
        else:
            number = _plain_number(text)
    if number is None or not 0.0 <= number <= 1.0:
        raise bad
    return number


# ----------------------------------------------------------------------------- rates

_BITS = re.compile(rf"^({_NUM})\s*([kmgt]?)$", re.IGNORECASE)
RATE_PATTERN = r"^\s*(?:\d+(?:\.\d*)?|\.\d+)\s*[A-Za-z]*\s*(?:/s|ps)?\s*$"
_RATE_HELP = "write e.g. 20M/s, 1.5G/s, 100Mbit/s or a number of bytes per second"


def parse_rate(value: object) -> float:
    """Bytes per second from ``"20M/s"``, ``"20M"``, ``"100Mbit/s"``/``"100Mbps"`` (bits, decimal) or a number."""
    bad = ValueError(f"'{_text(value)}' is not a rate; {_RATE_HELP}")
    number = _number(value)
    if number is None and isinstance(value, str):
        text = value.strip()
        lower = text.lower()
        bits_suffix = next((s for s in ("bit/s", "bit") if lower.endswith(s)), None)
        if bits_suffix is None and text.endswith("bps"):  # lower-case b: bits
            bits_suffix = "bps"
        if bits_suffix is not None:
            match = _BITS.match(text[: -len(bits_suffix)].strip())
            if match is None:
                raise bad
            prefix = match.group(2).lower()
            power = "kmgt".index(prefix) + 1 if prefix else 0
            number = float(match.group(1)) * 1000**power / 8
        else:
            for per_second in ("/s", "ps"):
                if lower.endswith(per_second):
                    text = text[: -len(per_second)].rstrip()
                    break
            try:
                number = float(parse_bytes(text))
            except ValueError:
                raise bad from None
    if number is None:
        raise bad
    if number < 0:
        raise ValueError(f"'{_text(value)}' is negative; a rate must be 0 or more")
    return number


# ----------------------------------------------------------------------------- pydantic types


def _number_or_pattern(pattern: str, description: str, **number: float) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [{"type": "number", **number}, {"type": "string", "pattern": pattern}],
            "description": description,
        }
    )


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _number_or_pattern(DURATION_PATTERN, "seconds, or e.g. 30s, 10m, 1h30m, 250ms", minimum=0),
]
ByteSize = Annotated[
    int,
    BeforeValidator(parse_bytes),
    _number_or_pattern(BYTES_PATTERN, "bytes, or e.g. 512M, 4G (binary), 4GB (decimal)", minimum=0),
]
Fraction = Annotated[
    float,
    BeforeValidator(parse_fraction),
    _number_or_pattern(r"^\s*\d+(?:\.\d*)?\s*%\s*$", "0..1, or a percentage like 2%", minimum=0, maximum=1),
]
Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    _number_or_pattern(RATE_PATTERN, "bytes/s, or e.g. 20M/s, 100Mbit/s", minimum=0),
]
