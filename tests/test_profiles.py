"""Hardware profiles: the shipped files, error reporting and overrides."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest

from eden.errors import InvalidInput, Issue
from eden.profiles import (
    DEFAULT_PROFILES_DIR,
    BootTime,
    HwProfile,
    OverrideError,
    apply_overrides,
    load_profile,
    load_profiles,
)

SHIPPED = ["eve-qemu-x86_64", "gateway-arm", "gateway-x86", "nuc-class", "qemu-aarch64", "qemu-x86_64", "rpi4-class"]
BASE = (DEFAULT_PROFILES_DIR / "qemu-x86_64.yaml").read_text()


def _write(tmp_path: Path, text: str, name: str = "qemu-x86_64") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _only_issue(path: Path) -> Issue:
    with pytest.raises(InvalidInput) as info:
        load_profile(path)
    assert len(info.value.issues) == 1, str(info.value)
    return info.value.issues[0]


def test_all_shipped_profiles_load() -> None:
    profiles = load_profiles()
    assert list(profiles) == SHIPPED
    for name, profile in profiles.items():
        assert profile.name == name
        assert profile.reserved_memory < profile.memory
        assert profile.mgmt_nics
        assert profile.description and profile.boot_time.mean > 0 and profile.image_write_speed > 0


def test_shipped_profile_details() -> None:
    p = load_profiles()
    assert p["qemu-x86_64"].qemu is not None and p["qemu-x86_64"].qemu.machine == "q35"
    assert p["qemu-x86_64"].tpm == "2.0" and p["qemu-x86_64"].storage.kind == "virtio"
    assert p["qemu-aarch64"].arch == "aarch64" and p["qemu-aarch64"].qemu is not None
    rpi = p["rpi4-class"]
    assert rpi.tpm == "none" and rpi.firmware.kind == "u-boot" and rpi.storage.kind == "sd"
    assert rpi.image_write_speed == 20 * 2**20
    assert [(n.name, n.kind, n.mgmt) for n in rpi.nics] == [("eth0", "ethernet", True), ("wlan0", "wifi", False)]
    assert p["nuc-class"].memory == 16 * 2**30 and p["nuc-class"].storage.kind == "nvme"
    gw = p["gateway-x86"]
    assert [(n.name, n.mgmt, n.cost) for n in gw.nics] == [("eth0", True, 0), ("eth1", True, 10), ("wwan0", False, 0)]
    assert p["gateway-arm"].memory == 2 * 2**30 and p["gateway-arm"].storage.kind == "emmc"
    for name in ("rpi4-class", "nuc-class", "gateway-x86", "gateway-arm"):
        assert 0 < p[name].failures.boot_hang < 0.01
    assert p["qemu-x86_64"].failures.boot_hang == 0


def test_profiles_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, BASE)
    monkeypatch.setenv("EDEN_PROFILES_DIR", str(tmp_path))
    assert list(load_profiles()) == ["qemu-x86_64"]
    monkeypatch.setenv("EDEN_PROFILES_DIR", str(tmp_path / "nope"))
    with pytest.raises(InvalidInput, match="not found"):
        load_profiles()


def test_unknown_key(tmp_path: Path) -> None:
    text = BASE.replace("  baud: 115200\n", "  baud: 115200\n  boot_markr: x\n")
    issue = _only_issue(_write(tmp_path, text))
    # boot_marker is still present, so only the unknown key is reported
    assert issue.message == "unknown key 'boot_markr'"
    assert issue.hint == "did you mean 'boot_marker'?"
    assert (issue.line, issue.col) == (_line_of(text, "boot_markr"), 3)


def test_bad_duration(tmp_path: Path) -> None:
    text = BASE.replace("  mean: 25s", "  mean: 25 seconds")
    issue = _only_issue(_write(tmp_path, text))
    assert issue.message.startswith("'25 seconds' is not a duration; write e.g. 30s, 10m")
    assert (issue.line, issue.col) == (_line_of(text, "25 seconds"), 9)


def test_tpm_12_rejected_with_hint(tmp_path: Path) -> None:
    text = BASE.replace("tpm: 2.0", "tpm: 1.2")
    path = _write(tmp_path, text)
    issue = _only_issue(path)
    assert issue.message == "'1.2' is not a supported TPM; EVE-OS needs TPM 2.0 or none"
    assert issue.hint == 'write tpm: "2.0" or tpm: none'
    assert (issue.line, issue.col) == (_line_of(text, "tpm: 1.2"), 6)
    assert str(issue).startswith(f"{path}:{issue.line}:6: error:")


@pytest.mark.parametrize(("written", "tpm"), [("2.0", "2.0"), ('"2.0"', "2.0"), ("2", "2.0"), ("none", "none")])
def test_tpm_spellings(tmp_path: Path, written: str, tpm: str) -> None:
    profile = load_profile(_write(tmp_path, BASE.replace("tpm: 2.0", f"tpm: {written}")))
    assert profile.tpm == tpm


def test_name_must_match_file(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE, name="other")
    issue = _only_issue(path)
    assert issue.message == "profile name 'qemu-x86_64' does not match the file name 'other.yaml'"
    assert (issue.line, issue.col) == (1, 7)
    assert issue.hint is not None and "other" in issue.hint


def test_cross_field_checks(tmp_path: Path) -> None:
    text = BASE.replace("reserved_memory: 1G", "reserved_memory: 8G")
    issue = _only_issue(_write(tmp_path, text))
    assert "reserved_memory (8G) must be less than memory (4G)" == issue.message
    text = BASE.replace("  max: 1m", "  max: 10s")
    issue = _only_issue(_write(tmp_path, text))
    assert issue.message == "max (10s) is smaller than mean (25s)"
    assert issue.line == _line_of(text, "max: 10s")


def test_nic_checks(tmp_path: Path) -> None:
    issue = _only_issue(_write(tmp_path, BASE.replace("name: eth1", "name: eth0")))
    assert issue.message == "NIC name 'eth0' is used more than once"
    text = BASE.replace("    kind: ethernet\n", "    kind: ethernet\n    mgmt: false\n")
    issue = _only_issue(_write(tmp_path, text))
    assert issue.message.startswith("no management NIC")
    issue = _only_issue(_write(tmp_path, BASE.replace("cost: 10", "cost: 300")))
    assert issue.message == "'300' is out of range for 'cost': must be <= 255"


def test_load_profiles_collects_all_files(tmp_path: Path) -> None:
    _write(tmp_path, BASE.replace("cores: 4", "cores: 0"))
    _write(tmp_path, BASE.replace("name: qemu-x86_64", "name: second"), name="second")
    _write(tmp_path, "name: [unclosed\n", name="broken")
    with pytest.raises(InvalidInput) as info:
        load_profiles(tmp_path)
    files = sorted(Path(i.file).name for i in info.value.issues)
    assert files == ["broken.yaml", "qemu-x86_64.yaml"]


def test_overrides() -> None:
    base = load_profiles()["rpi4-class"]
    changed = apply_overrides(base, {"memory": "8G", "boot_time": {"mean": "70s"}, "failures": {"boot_hang": "1%"}})
    assert changed.memory == 8 * 2**30
    assert changed.boot_time.mean == 70 and changed.boot_time.sd == base.boot_time.sd
    assert changed.failures.boot_hang == pytest.approx(0.01)
    assert changed.failures.write_error == base.failures.write_error
    assert base.memory == 4 * 2**30  # the original is untouched
    nics = apply_overrides(base, {"nics": [{"name": "eth0", "kind": "ethernet"}]}).nics
    assert [n.name for n in nics] == ["eth0"]  # lists are replaced, not merged
    assert apply_overrides(base, {}) is base


def test_bad_overrides() -> None:
    base = load_profiles()["rpi4-class"]
    with pytest.raises(OverrideError) as info:
        apply_overrides(base, {"memroy": "8G", "boot_time": {"mean": "soon"}})
    assert isinstance(info.value, ValueError)
    problems = {p.path: p for p in info.value.problems}
    assert problems[("memroy",)].message == "unknown key 'memroy'"
    assert problems[("memroy",)].hint == "did you mean 'memory'?"
    assert problems[("boot_time", "mean")].message.startswith("'soon' is not a duration")
    assert "rpi4-class" in str(info.value) and "memroy" in str(info.value)
    with pytest.raises(ValueError, match="tpm"):
        apply_overrides(base, {"tpm": "1.2"})


def test_boot_time_sampling() -> None:
    rng = np.random.default_rng(7)
    for dist in ("normal", "lognormal", "uniform"):
        bt = BootTime(distribution=dist, mean=60, sd=10, min=40, max=100)
        samples = [bt.sample(rng) for _ in range(4000)]
        assert 40 <= min(samples) and max(samples) <= 100
        assert statistics.fmean(samples) == pytest.approx(60, rel=0.05)
    assert BootTime(distribution="fixed", mean=30, sd=5).sample(rng) == 30
    assert BootTime(distribution="normal", mean=0.5, sd=2).sample(rng) >= 1.0
    with pytest.raises(ValueError, match="min"):
        BootTime(distribution="normal", mean=10, min=20)


def test_profile_round_trips_through_dump() -> None:
    for profile in load_profiles().values():
        assert HwProfile.model_validate(profile.model_dump()) == profile
