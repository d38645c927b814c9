"""The lab file (eden/lab/model.py, eden/lab/load.py): the example loads, and each kind of mistake is
reported at its line and column, through the API and through ``eden lab places`` (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eden import cli
from eden.errors import InvalidInput
from eden.lab.load import GENERIC_HEALTH, load_lab
from eden.lab.model import place_drivers, place_methods
from tests.eden_subprocess import env, run_eden

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "lab.yaml"

BASE = """\
lab: bench
controller:
  listen: 127.0.0.1:0
leases:
  ttl: 30
places:
  p1:
    profile: rpi4-class
    power:
      command: {on: "true", off: "true"}
    console:
      network: {url: "tcp://127.0.0.1:3001"}
    link:
      command: {down: "echo down {port}", up: "echo up {port}"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def test_the_example_loads_with_every_driver_kind() -> None:
    loaded = load_lab(EXAMPLE)
    assert loaded.lab.lab == "nightly"
    assert loaded.db_path == EXAMPLE.parent / "lab-leases.sqlite"
    assert loaded.lab.controller.port == 8443 and loaded.lab.controller.advertised_host == "192.168.10.1"
    assert loaded.lab.leases.heartbeat_every == 60
    rack = loaded.place("rack1-3")
    assert place_drivers(rack) == {"power": "pdudaemon", "console": "serial", "ssh": "ssh", "link": "command",
                                   "media": "device"}
    assert place_methods(rack) == {"power_on", "power_off", "power_cycle", "set_links"}
    assert place_methods(loaded.place("rack2-1")) == {"power_on", "power_off", "power_cycle"}
    # YAML 1.1 reads 'on:'/'off:' as booleans; the command power driver gets its keys back
    power = loaded.place("rack2-1").power
    assert power is not None and power.command is not None and power.command.on == "relayctl 4 on"
    assert place_drivers(loaded.place("desk-gw"))["power"] == "manual"


def test_defaults_db_beside_the_file_and_heartbeat_a_third_of_ttl(tmp_path: Path) -> None:
    loaded = load_lab(write(tmp_path, BASE))
    assert loaded.db_path == tmp_path / ".eden-lab.sqlite"
    assert loaded.lab.leases.heartbeat_every == pytest.approx(10)
    # no health scenario of its own for the profile: eden's generic one (run with the place's profile)
    assert loaded.health_scenario("rpi4-class") == GENERIC_HEALTH and GENERIC_HEALTH.is_file()
    own = tmp_path / "scenarios" / "health-rpi4-class.yaml"
    own.parent.mkdir()
    own.write_text("name: x\n")
    assert loaded.health_scenario("rpi4-class") == own  # one beside the lab file wins


def test_a_place_without_power_or_link_has_no_methods(tmp_path: Path) -> None:
    text = BASE.split("    power:")[0] + "    ssh: {host: 10.0.0.2}\n"
    place = load_lab(write(tmp_path, text)).place("p1")
    assert place_methods(place) == frozenset()
    assert place_drivers(place) == {"ssh": "ssh"}


MISTAKES = [
    # (what, old text, new text, line:col, words in the message)
    ("unknown key", "    profile: rpi4-class\n", "    profile: rpi4-class\n    colour: red\n", "9:5",
     ["unknown key 'colour'", "allowed keys: profile, tags, serial, power"]),
    ("two power kinds", '      command: {on: "true", off: "true"}\n',
     '      command: {on: "true", off: "true"}\n      manual: {}\n', "9:5", ["exactly one of pdudaemon, command, manual"]),
    ("no console kind", '      network: {url: "tcp://127.0.0.1:3001"}\n', "      reattach: 5\n", "11:5",
     ["exactly one of serial, network"]),
    ("unknown profile", "profile: rpi4-class", "profile: rpi5-class", "8:14",
     ["unknown hardware profile 'rpi5-class'", "did you mean 'rpi4-class'?", "known profiles:"]),
    ("bad url scheme", "tcp://127.0.0.1:3001", "http://127.0.0.1:3001", "12:22", ["'http'", "tcp or rfc2217"]),
    ("heartbeat not below ttl", "  ttl: 30\n", "  ttl: 30\n  heartbeat: 30\n", "6:14",
     ["heartbeat (30s) must be less than ttl (30s)"]),
    ("ttl too short", "  ttl: 30\n", "  ttl: 2\n", "5:8", ["must be >= 5"]),
    ("missing {port}", 'down: "echo down {port}"', 'down: "echo down"', "14:23", ["no {port} placeholder"]),
    ("listen port out of range", "127.0.0.1:0", "127.0.0.1:70000", "3:11", ["out of range: 0 to 65535"]),
    ("bad place name", "  p1:\n", "  P1:\n", "7:3", ["'P1' is not valid"]),
    ("media device and by hand", "    link:\n", "    media: {device: sd.img, manual: {}}\n    link:\n", "13:5",
     ["exactly one of device, manual is needed under 'media'"]),
    ("bad serial", "    profile: rpi4-class\n", "    profile: rpi4-class\n    serial: 'a b'\n", "9:13",
     ["'a b' is not valid for 'serial'"]),
]


def test_media_by_hand_and_a_serial(tmp_path: Path) -> None:
    text = BASE.replace("    link:\n", "    serial: ABC-123\n    media:\n      manual:\n    link:\n")
    place = load_lab(write(tmp_path, text)).place("p1")
    assert place.serial == "ABC-123" and place.media is not None and place.media.manual is not None
    assert place.media.manual.timeout == 1800 and place.media.device is None
    assert place_drivers(place)["media"] == "manual"


@pytest.mark.parametrize("what,old,new,where,words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_reported_at_its_position(tmp_path: Path, what: str, old: str, new: str, where: str,
                                                  words: list[str]) -> None:
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(InvalidInput) as exc:
        load_lab(path)
    text = str(exc.value)
    assert f"{path}:{where}:" in text, text
    for word in words:
        assert word in text, text


def test_not_a_mapping_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"lab.yaml:1:1: error: a lab file is a mapping"):
        load_lab(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(InvalidInput, match="file not found"):
        load_lab(tmp_path / "nope.yaml")


def test_unknown_place_names_the_known_ones(tmp_path: Path) -> None:
    loaded = load_lab(write(tmp_path, BASE))
    with pytest.raises(InvalidInput, match=r"unknown place 'p2'.*\n.*known places: p1"):
        loaded.place("p2")


@pytest.mark.parametrize("what,old,new,where,words", [MISTAKES[0], MISTAKES[3], MISTAKES[7]],
                         ids=[MISTAKES[i][0] for i in (0, 3, 7)])
def test_eden_lab_places_reports_the_position_and_exits_2(tmp_path: Path, what: str, old: str, new: str, where: str,
                                                          words: list[str]) -> None:
    write(tmp_path, BASE.replace(old, new, 1))
    proc = run_eden("lab", "places", "--lab", "lab.yaml", cwd=tmp_path, env=env(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"lab.yaml:{where}: error:" in proc.stderr
    assert words[0] in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / ".eden-lab.sqlite").exists()  # nothing written for a file that does not load


def test_schema_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "--lab"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"lab", "controller", "places"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    jsonschema = pytest.importorskip("jsonschema")
    # the loaded example, as an editor reading YAML 1.2 sees it ('on:' a string, not a boolean)
    jsonschema.Draft202012Validator(schema).validate(load_lab(EXAMPLE).lab.model_dump(mode="json"))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors({"lab": "x", "controller": {"listen": "h:1"},
                                                                        "places": {"p": {"profile": "x", "bogus": 1}}}))
    assert any("bogus" in e.message for e in errors)


def test_schema_lab_and_profile_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["schema", "--lab", "--profile"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
