"""Value types: durations, sizes, fractions, rates."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from eden.units import (
    ByteSize,
    Duration,
    Fraction,
    Rate,
    format_bytes,
    format_duration,
    parse_bytes,
    parse_duration,
    parse_fraction,
    parse_rate,
)
from eden.yamlsrc import YamlFloat, YamlInt


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("10m", 600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("1d2h", 93600),
        ("90", 90),
        ("1h 30m 10s", 5410),
        ("0", 0),
        (45, 45),
        (2.5, 2.5),
        (YamlInt(7, "7"), 7),
    ],
)
def test_parse_duration_good(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 minutes", "", "  ", "abc", "1x", "30m1h", "1h1h", "h", "inf", "nan", None, [1]])
def test_parse_duration_bad(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration; write e.g. 30s, 10m, 1h30m, 250ms"):
        parse_duration(bad)


def test_parse_duration_message_exact() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("10 minutes")
    assert str(info.value) == (
        "'10 minutes' is not a duration; write e.g. 30s, 10m, 1h30m, 250ms or a number of seconds"
    )


@pytest.mark.parametrize("bad", [-1, -0.5, "-5"])
def test_parse_duration_negative(bad: object) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [True, False])
def test_parse_duration_rejects_bools(bad: bool) -> None:
    with pytest.raises(ValueError, match=f"'{str(bad).lower()}' is not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h30m"), (0.25, "250ms"), (45, "45s"), (183600, "2d3h"), (0, "0s"), (90, "1m30s"), (1.5, "1.5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("512M", 512 * 2**20),
        ("4G", 4 * 2**30),
        ("1.5G", 3 * 2**29),
        ("64K", 65536),
        ("2T", 2 * 2**40),
        ("512MiB", 512 * 2**20),
        ("4GiB", 4 * 2**30),
        ("512MB", 512 * 10**6),
        ("4GB", 4 * 10**9),
        ("100B", 100),
        ("100", 100),
        (4096, 4096),
    ],
)
def test_parse_bytes_good(text: object, n: int) -> None:
    assert parse_bytes(text) == n


@pytest.mark.parametrize("bad", ["4 gigs", "G", "", "4X", "iB", True, None, -1, "-4G"])
def test_parse_bytes_bad(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_bytes(bad)


@pytest.mark.parametrize(("n", "text"), [(4 * 2**30, "4G"), (512 * 2**20, "512M"), (3 * 2**29, "1.5G"), (100, "100B")])
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text
    assert parse_bytes(text) == n


@pytest.mark.parametrize(("value", "fraction"), [(0.02, 0.02), (1, 1.0), (0, 0.0), ("2%", 0.02), ("99.5%", 0.995)])
def test_parse_fraction_good(value: object, fraction: float) -> None:
    assert parse_fraction(value) == pytest.approx(fraction)


@pytest.mark.parametrize("bad", ["120%", 1.5, -0.1, "x", True, "%"])
def test_parse_fraction_bad(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a fraction between 0 and 1 \\(or 0%..100%\\)"):
        parse_fraction(bad)
    if bad == "120%":
        with pytest.raises(ValueError) as info:
            parse_fraction(bad)
        assert str(info.value) == "'120%' is not a fraction between 0 and 1 (or 0%..100%)"


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        ("20M/s", 20 * 2**20),
        ("20M", 20 * 2**20),
        ("20MB/s", 20e6),
        ("100Mbit/s", 12.5e6),
        ("100Mbps", 12.5e6),
        ("2.5Gbit/s", 312.5e6),
        (1000, 1000.0),
    ],
)
def test_parse_rate(value: object, rate: float) -> None:
    assert parse_rate(value) == pytest.approx(rate)


@pytest.mark.parametrize("bad", ["fast", "-1M/s", True, "Mbit/s"])
def test_parse_rate_bad(bad: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(bad)


class _M(BaseModel):
    timeout: Duration = 0
    size: ByteSize = 0
    p: Fraction = 0
    speed: Rate = 0


def test_annotated_types_in_models() -> None:
    m = _M.model_validate({"timeout": "1h30m", "size": "4G", "p": "2%", "speed": "20M/s"})
    assert (m.timeout, m.size, m.p, m.speed) == (5400.0, 4 * 2**30, 0.02, 20 * 2**20)
    m = _M.model_validate({"timeout": YamlFloat(1.5, "1.5"), "size": YamlInt(10, "10")})
    assert (m.timeout, m.size) == (1.5, 10)
    json.dumps(m.model_dump())


def test_annotated_types_errors_carry_message() -> None:
    with pytest.raises(ValidationError) as info:
        _M.model_validate({"timeout": "soon"})
    (err,) = info.value.errors()
    assert err["type"] == "value_error"
    assert "'soon' is not a duration" in str(err["ctx"]["error"])


def test_json_schema() -> None:
    schema = TypeAdapter(Duration).json_schema()
    kinds = [alt["type"] for alt in schema["anyOf"]]
    assert kinds == ["number", "string"]
    assert schema["anyOf"][0]["minimum"] == 0
    pattern = re.compile(schema["anyOf"][1]["pattern"])
    assert pattern.match("1h30m") and pattern.match("250ms") and not pattern.match("10 minutes")
    assert "anyOf" in TypeAdapter(ByteSize).json_schema()
    assert "anyOf" in TypeAdapter(Fraction).json_schema()
