"""configItems table and EVE's ParseItem rule (spec §6)."""

from __future__ import annotations

from simulator.eve.config_items import (
    ITEMS,
    UINT32_MAX,
    GlobalConfig,
    close_keys,
    validate_item,
)

SPEC_KEYS = {
    "timer.config.interval", "timer.metric.interval", "timer.deviceinfo.interval",
    "timer.cert.interval", "timer.send.timeout", "timer.dial.timeout",
    "timer.reboot.no.network", "timer.update.fallback.no.network",
    "timer.test.baseimage.update", "timer.vault.ready.cutoff", "timer.port.testinterval",
    "timer.port.testbetterinterval", "timer.port.testduration", "timer.port.timeout",
    "timer.download.retry", "timer.download.stalled", "blob.download.max.retries",
    "timer.boot.retry", "force.fallback.counter", "network.fallback.any.eth",
}


def test_table_matches_spec() -> None:
    assert set(ITEMS) == SPEC_KEYS
    cfg = ITEMS["timer.config.interval"]
    assert (cfg.default, cfg.min, cfg.max, cfg.kind) == (60, 5, 86400, "int")
    assert ITEMS["timer.deviceinfo.interval"].max == UINT32_MAX == 4294967295
    assert ITEMS["timer.reboot.no.network"].default == 604800
    assert ITEMS["timer.reboot.no.network"].max is None
    assert (ITEMS["timer.port.testinterval"].min, ITEMS["timer.port.testinterval"].default) == (300, 300)
    assert (ITEMS["timer.download.stalled"].min, ITEMS["timer.download.retry"].min) == (20, 60)
    assert (ITEMS["blob.download.max.retries"].min, ITEMS["blob.download.max.retries"].max) == (1, 10)
    eth = ITEMS["network.fallback.any.eth"]
    assert eth.kind == "enum" and eth.default == "disabled" and set(eth.allowed) == {"enabled", "disabled"}


def test_defaults() -> None:
    g = GlobalConfig.defaults()
    assert g["timer.test.baseimage.update"] == 600
    assert g.get("timer.update.fallback.no.network") == 300
    assert g["network.fallback.any.eth"] == "disabled"
    assert all(g.is_default(k) for k in ITEMS)


def test_valid_values_applied() -> None:
    g = GlobalConfig.defaults()
    assert g.apply({"timer.config.interval": "30", "network.fallback.any.eth": "enabled",
                    "force.fallback.counter": 7}) == []
    assert g["timer.config.interval"] == 30
    assert g["network.fallback.any.eth"] == "enabled"
    assert g["force.fallback.counter"] == 7


def test_bad_value_keeps_previous() -> None:
    g = GlobalConfig.defaults()
    g.apply({"timer.config.interval": "30"})
    errors = g.apply({"timer.config.interval": "abc"})
    assert g["timer.config.interval"] == 30
    assert [(e.key, e.value) for e in errors] == [("timer.config.interval", "abc")]
    assert g.errors == errors


def test_out_of_range_keeps_previous_else_default() -> None:
    g = GlobalConfig.defaults()
    errors = g.apply({"timer.config.interval": "2"})  # below min 5
    assert g["timer.config.interval"] == 60  # no previous -> default
    assert "minimum is 5 s" in errors[0].reason
    g.apply({"timer.config.interval": 120})
    errors = g.apply({"timer.config.interval": 100000})  # above max 86400
    assert g["timer.config.interval"] == 120
    assert "maximum is 86400" in errors[0].reason
    g.apply({"timer.config.interval": 120})
    g.apply({"timer.config.interval": "-5"})
    assert g["timer.config.interval"] == 120
    g.apply({"network.fallback.any.eth": "maybe"})
    assert g["network.fallback.any.eth"] == "disabled"


def test_absent_reverts_to_default_and_unknown_ignored() -> None:
    g = GlobalConfig.defaults()
    g.apply({"timer.metric.interval": 10, "timer.port.testinterval": 600})
    errors = g.apply({"timer.metric.interval": 10, "timer.configinterval": 5})
    assert g["timer.metric.interval"] == 10
    assert g["timer.port.testinterval"] == 300  # removed -> default
    assert len(errors) == 1 and errors[0].key == "timer.configinterval"
    assert "timer.config.interval" in errors[0].reason
    assert "timer.configinterval" not in g.as_dict()


def test_validate_item_and_hints() -> None:
    assert validate_item("timer.test.baseimage.update", 60) is None
    msg = validate_item("timer.test.baseimage.update", 10)
    assert msg is not None and "minimum is 30 s (spec §6)" in msg
    assert validate_item("blob.download.max.retries", 11) is not None
    assert validate_item("timer.cert.interval", 10**9) is None  # no max
    assert validate_item("timer.cert.interval", UINT32_MAX + 1) is not None
    assert validate_item("timer.config.interval", True) is not None
    unknown = validate_item("timer.cofig.interval", 60)
    assert unknown is not None and "did you mean timer.config.interval" in unknown
    assert close_keys("timer.port.test.interval")[0] == "timer.port.testinterval"
