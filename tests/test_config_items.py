"""configItems table and EVE's ParseItem rule (spec §6)."""

from __future__ import annotations

from collections import Counter

import pytest

from eve.config_items import (
    ITEMS,
    is_known,
    spec_of,
    UINT32_MAX,
    GlobalConfig,
    close_keys,
    validate_item,
)

def test_the_catalogue_has_every_item_eve_knows() -> None:
    # spec §6.1: 130 keys = 67 integer, 33 bool, 3 tri-state, 25 string and 2 per-agent patterns.
    kinds = Counter(spec.kind for spec in ITEMS.values())
    assert (len(ITEMS), kinds["int"], kinds["bool"], kinds["tristate"], kinds["string"]) == (128, 67, 33, 3, 25)
    assert is_known("agent.zedagent.debug.loglevel") and is_known("agent.nim.debug.remote.loglevel")
    assert is_known("debug.downloader.loglevel") and is_known("debug.nim.remote.loglevel")  # legacy spellings
    assert spec_of("debug.default.loglevel") is ITEMS["debug.default.loglevel"]  # the global key wins
    cfg = ITEMS["timer.config.interval"]
    assert (cfg.default, cfg.min, cfg.max, cfg.kind) == (60, 5, 86400, "int")
    assert ITEMS["timer.deviceinfo.interval"].max == UINT32_MAX == 4294967295
    assert ITEMS["timer.reboot.no.network"].default == 604800
    assert ITEMS["timer.reboot.no.network"].max == UINT32_MAX
    assert (ITEMS["timer.port.testinterval"].min, ITEMS["timer.port.testinterval"].default) == (300, 300)
    assert (ITEMS["timer.download.stalled"].min, ITEMS["timer.download.retry"].min) == (20, 60)
    assert (ITEMS["blob.download.max.retries"].min, ITEMS["blob.download.max.retries"].max) == (1, 10)
    assert (ITEMS["network.download.max.cost"].default, ITEMS["network.download.max.cost"].max) == (0, 255)
    assert ITEMS["storage.dom0.disk.maxusagebytes"].default == 2147483648
    eth = ITEMS["network.fallback.any.eth"]
    assert eth.kind == "tristate" and eth.default == "disabled"
    assert (ITEMS["maintenance.mode"].default, ITEMS["airgap.mode"].default) == ("none", "none")
    # Controller config: the three debug.enable items default to false (parseconfig.go).
    assert [ITEMS[k].default for k in ("debug.enable.usb", "debug.enable.vga", "debug.enable.console")] == [False] * 3
    assert ITEMS["vector.enabled"].default is True and ITEMS["app.allow.vnc"].default is False


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_bool_true_spellings_are_go_parsebool(text: str) -> None:
    assert validate_item("app.allow.vnc", text) is None
    g = GlobalConfig.defaults()
    assert g.apply({"app.allow.vnc": text}) == [] and g["app.allow.vnc"] is True


@pytest.mark.parametrize("text", ["yes", "on", "tRUE", "true ", " 1", "2", ""])
def test_other_bool_spellings_are_refused(text: str) -> None:
    # spec §6.1: strconv.ParseBool, case-sensitive, nothing trimmed.
    assert validate_item("app.allow.vnc", text) is not None
    g = GlobalConfig.defaults()
    errors = g.apply({"app.allow.vnc": text})
    assert [e.key for e in errors] == ["app.allow.vnc"] and g["app.allow.vnc"] is False


@pytest.mark.parametrize(("text", "canonical"), [
    ("none", "none"), ("enabled", "enabled"), ("enable", "enabled"), ("on", "enabled"),
    ("disabled", "disabled"), ("disable", "disabled"), ("off", "disabled"),
])
def test_tristate_spellings(text: str, canonical: str) -> None:
    g = GlobalConfig.defaults()
    assert g.apply({"maintenance.mode": text, "network.fallback.any.eth": text}) == []
    assert g["maintenance.mode"] == g["network.fallback.any.eth"] == canonical


@pytest.mark.parametrize("value", ["Enabled", "ON", "true", True, "yes", " on"])
def test_tristate_refuses_other_spellings(value: object) -> None:
    problem = validate_item("airgap.mode", value)  # type: ignore[arg-type]
    assert problem is not None
    if value is True:
        assert "quote the value" in problem  # YAML reads 'on' as true


@pytest.mark.parametrize(("key", "good", "bad"), [
    ("debug.default.loglevel", ["none", "all", "info", "WARNING", "Trace"], ["verbose", "", "info "]),
    ("debug.syslog.loglevel", ["emerg", "crit", "all", "none"], ["INFO", "fatal"]),
    ("timer.vault.trim.cron", ["", "0 2 * * 6,0", "*/5 0-6 1 1,6 7"], ["0 2 * *", "61 * * * *", "a b c d e"]),
    ("app.boot.order", ["", "usb", "nousb"], ["USB", "cdrom"]),
    ("igpu.gop", ["gop.rom", ""], ["../gop.rom", "a/b", "..", "."]),
    ("vector.config", ["", "aGVsbG8="], ["not base64!"]),
    ("diag.probe.remote.http.endpoint", ["", "example.com", "http://10.0.0.1/x"], ["ftp://x", "bad host"]),
    ("diag.probe.remote.https.endpoint", ["", "example.com", "https://example.com/p"], ["https://10.0.0.1/", "http://a"]),
    ("storage.longhorn.node-drain-policy", ["always-allow"], ["sometimes"]),
    ("agent.zedagent.debug.loglevel", ["debug"], ["loud"]),
])
def test_string_items_accept_what_eve_accepts(key: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert validate_item(key, value) is None, (key, value)
    for value in bad:
        assert validate_item(key, value) is not None, (key, value)


def test_ints_are_not_trimmed_and_have_no_sign() -> None:
    for text in (" 60", "60 ", "+60", "6e1", "0x3c", "-60", ""):
        assert validate_item("timer.config.interval", text) is not None, text
    assert validate_item("timer.config.interval", "060") is None  # base-10 ParseUint takes leading zeros


def test_per_agent_keys_are_kept_while_present() -> None:
    g = GlobalConfig.defaults()
    assert g.apply({"agent.nim.debug.loglevel": "debug"}) == []
    assert g["agent.nim.debug.loglevel"] == "debug"
    g.apply({})
    assert g["agent.nim.debug.loglevel"] == "info"


def test_the_config_is_sparse() -> None:
    # One of these per node: a million-node fleet must not carry 128 entries per node.
    g = GlobalConfig.defaults()
    assert g.values == {}
    g.apply({"timer.config.interval": 30, "timer.config.intervl": 5})
    assert g.values == {"timer.config.interval": 30}


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
    assert msg is not None and "minimum is 30 s (spec §6.1)" in msg
    assert validate_item("blob.download.max.retries", 11) is not None
    assert validate_item("timer.cert.interval", 10**9) is None  # up to u32
    assert validate_item("timer.cert.interval", UINT32_MAX + 1) is not None
    assert validate_item("timer.config.interval", True) is not None
    unknown = validate_item("timer.cofig.interval", 60)
    assert unknown is not None and "did you mean timer.config.interval" in unknown
    assert close_keys("timer.port.test.interval")[0] == "timer.port.testinterval"
