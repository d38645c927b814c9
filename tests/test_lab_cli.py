"""``eden lab``: reserve, status, release, force and health through real ``eden`` processes, --json parsed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.eden_subprocess import env, run_eden

LAB = """\
lab: bench
controller:
  listen: 127.0.0.1:0
leases:
  db: state/leases.sqlite
  ttl: 120
places:
  p1:
    profile: rpi4-class
    tags: [arm64]
    power:
      pdudaemon: {url: "http://127.0.0.1:16421", hostname: pdu1, port: 3}
    console:
      serial: {device: /dev/ttyUSB0}
  p2:
    profile: nuc-class
    ssh: {host: 127.0.0.1}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    (tmp_path / "lab.yaml").write_text(LAB)
    return tmp_path


def eden_lab(where: Path, *args: str, code: int = 0) -> str:
    proc = run_eden("lab", *args, "--lab", "lab.yaml", cwd=where, env=env(where))
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout if code == 0 else proc.stderr


def test_reserve_status_release_round_trip(lab: Path) -> None:
    lease = json.loads(eden_lab(lab, "reserve", "p1", "--owner", "alice", "--ttl", "60", "--json"))
    assert lease["place"] == "p1" and lease["owner"] == "alice" and len(lease["token"]) == 32
    assert lease["expires_at"] == pytest.approx(time.time() + 60, abs=10)
    assert (lab / "state" / "leases.sqlite").is_file()  # leases.db is relative to the lab file

    busy = eden_lab(lab, "reserve", "p1", "--owner", "bob", "--wait", "0.5", code=2)
    assert "place 'p1' is held by alice until" in busy

    status = json.loads(eden_lab(lab, "status", "--json", "--history", "10"))
    by_place = {p["place"]: p for p in status["places"]}
    assert by_place["p1"]["lease"]["owner"] == "alice" and by_place["p2"]["lease"] is None
    assert [e["event"] for e in status["history"]] == ["reserved"]

    wrong = eden_lab(lab, "release", "p1", "--token", "0" * 32, code=2)
    assert "lost" in wrong and "held by alice" in wrong
    eden_lab(lab, "release", "p1", "--token", lease["token"], "--json")
    assert json.loads(eden_lab(lab, "status", "--json"))["places"][0]["lease"] is None


def test_force_breaks_any_lease_and_is_logged(lab: Path) -> None:
    eden_lab(lab, "reserve", "p2", "--owner", "alice", "--json")
    broken = json.loads(eden_lab(lab, "release", "p2", "--force", "--by", "admin", "--json"))
    assert broken["broken"]["owner"] == "alice"
    status = json.loads(eden_lab(lab, "status", "--json", "--history", "5"))
    assert status["history"][-1]["event"] == "broken" and status["history"][-1]["detail"] == "by admin"
    assert json.loads(eden_lab(lab, "reserve", "p2", "--owner", "bob", "--json"))["owner"] == "bob"


def test_health_bad_then_good_and_places_listing(lab: Path) -> None:
    marked = json.loads(eden_lab(lab, "health", "p1", "--set", "bad", "--reason", "no console", "--by", "admin", "--json"))
    assert (marked["health"], marked["reason"], marked["checked_by"]) == ("bad", "no console", "admin")
    places = json.loads(eden_lab(lab, "places", "--json"))["places"]
    p1 = next(p for p in places if p["place"] == "p1")
    assert p1["health"] == "bad" and p1["profile"] == "rpi4-class" and p1["tags"] == ["arm64"]
    assert p1["drivers"] == {"power": "pdudaemon", "console": "serial"}
    assert p1["capabilities"] == ["power_cycle", "power_off", "power_on"]
    p2 = next(p for p in places if p["place"] == "p2")
    assert p2["capabilities"] == [] and p2["health"] == "unknown"
    eden_lab(lab, "health", "p1", "--set", "good", "--reason", "reseated the cable")
    status = json.loads(eden_lab(lab, "status", "--json"))
    assert status["places"][0]["health"] == "good"
    table = eden_lab(lab, "places")
    assert "p1" in table and "pdudaemon" in table and "power_cycle" in table


def test_unknown_place_and_bad_arguments_exit_2(lab: Path) -> None:
    unknown = eden_lab(lab, "reserve", "p3", code=2)
    assert "lab.yaml:7:1: error: unknown place 'p3'" in unknown and "known places: p1, p2" in unknown
    assert "required" in eden_lab(lab, "release", "p1", code=2)  # neither --token nor --force
    assert "--ttl" in eden_lab(lab, "reserve", "p1", "--ttl", "0", code=2)
