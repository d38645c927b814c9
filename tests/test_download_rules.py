"""Downloads as EVE's downloader and verifier run them (spec §3 step 1, §4, §6), one rule per test.

Driven like tests/test_node_rules.py: a bare ``Node``, its own timer heap and a fake controller.
The node learns its links through :meth:`Node.links` (the engine's ``set_ports`` calls it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from eve.enums import BaseOsStatus, BaseOsSubStatus, PartitionState as PS, ZSwState
from eve.node import Port
from eve.vocab import KeyedTimer, TimerFamily
from test_node_rules import MiB, Driver, _app, driver, make_node, online, status, zb

RETRY = 600.0  # timer.download.retry default (§6)
STALLED = 600.0  # timer.download.stalled default (§6)


def _bos(drv: Driver) -> dict:
    return drv.node.persist.bos or {}


def _links(drv: Driver, down: set[str]) -> None:
    """A link change seen by the network (the fake controller) and by the node, like the engine's."""
    drv.ctrl.port_down = set(down)
    drv.call("links", frozenset(down))


def _retry_ticks(drv: Driver, key: str = "bos") -> list[tuple[float, float]]:
    return [(t, at) for t, name, at in drv.timers_set if name == KeyedTimer(TimerFamily.DOWNLOAD_RETRY, key)]


def test_the_cost_gate_blocks_a_download_on_the_cost_10_backup_uplink_until_max_cost_allows_it() -> None:
    """§4 cost gate: with eth0 (cost 0) down and only eth1 (cost 10) up, the default
    network.download.max.cost 0 fails the download at once with EVE's text, reported FAILED (any
    swErr, §3 table); raising the max to 10 lets the next retry - at least timer.download.retry
    after the error, on the ticker - download it, and the update goes on."""
    drv = online(driver())
    _links(drv, {"eth0"})
    drv.run_for(60)
    assert drv.node.zedagent.config_received  # still online over the backup uplink
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: bool(_bos(drv).get("err")))
    err_at = drv.now
    assert _bos(drv)["err"] == "No IP management port addresses with cost <= 0"
    assert _bos(drv)["zsw"] == ZSwState.DOWNLOAD_STARTED
    assert status(drv) == (BaseOsStatus.FAILED, BaseOsSubStatus.NONE)
    drv.run_for(1800)
    assert zb(drv)["IMGB"].version is None  # nothing downloaded, however long it waits
    drv.ctrl.item("network.download.max.cost", 10)
    drv.run_until(lambda: _bos(drv).get("zsw") == ZSwState.DELIVERED or zb(drv)["IMGB"].version == "2.0", limit=1200)
    retried = [t for t, _what, data in drv.notes if _what == "download_failed"]
    assert len(retried) >= 2  # the gate failed again on earlier ticks while max.cost was 0
    ticks = _retry_ticks(drv)
    fired = [at for _t, at in ticks if at <= drv.now + 1e-6]
    assert all(at - err_at >= 0.3 * RETRY - 1e-6 for at in fired)
    drv.run_until(lambda: zb(drv)["IMGB"].state == PS.UPDATING)


def _failing_download() -> tuple[Driver, float]:
    """An online device with timer.download.retry 100 whose only cost-0 port is down: the update's
    download fails at the cost gate. Returns the driver and the time of the error."""
    drv = online(driver())
    drv.ctrl.item("timer.download.retry", 100)
    drv.run_for(120)
    _links(drv, {"eth0"})
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: bool(_bos(drv).get("err")))
    return drv, drv.now


def test_the_retry_ticker_is_0_3_to_1_times_timer_download_retry() -> None:
    """§4: runHandler's ticker is NewRangeTicker(0.3 x retry, retry); a retry needs retry seconds
    since the error (maybeRetryDownload), so the first retry comes between 1x and 2x retry."""
    drv, err_at = _failing_download()
    drv.run_for(3000)
    ticks = _retry_ticks(drv)
    gaps = [at - t for t, at in ticks]
    assert len(gaps) > 20
    assert all(30.0 - 1e-6 <= g <= 100.0 + 1e-6 for g in gaps)
    assert max(gaps) - min(gaps) > 20  # randomised, not a fixed period
    fails = [(t, d["err"]) for t, what, d in drv.notes if what == "download_failed"]
    assert fails[0][0] == pytest.approx(err_at)
    assert all(b[0] - a[0] >= 100.0 - 1e-6 for a, b in zip(fails, fails[1:]))
    assert all(b[0] - a[0] <= 200.0 + 1e-6 for a, b in zip(fails, fails[1:]))
    # the original error is kept and the retry counted (ErrorRetryCondition "Retrying; attempt N")
    assert fails[-1][1] == f"No IP management port addresses with cost <= 0; Retrying; attempt {len(fails) - 1}"



def test_the_ticker_range_is_fixed_when_the_download_starts_but_the_retry_wait_follows_the_item() -> None:
    """downloader.go: runHandler builds its ticker once (0.3-1 x timer.download.retry at start);
    maybeRetryDownload compares with the current timer.download.retry."""
    drv, err_at = _failing_download()
    drv.ctrl.item("timer.download.retry", 1000)
    drv.run_for(2500)
    gaps = [at - t for t, at in _retry_ticks(drv)]
    assert len(gaps) > 20 and all(30.0 - 1e-6 <= g <= 100.0 + 1e-6 for g in gaps)
    fails = drv.note_times("download_failed")
    assert fails[0] == pytest.approx(err_at)
    assert all(b - a >= 1000.0 - 1e-6 for a, b in zip(fails, fails[1:])) and len(fails) >= 2

def _slow_drv() -> Driver:
    """A node whose ports move 1 MB/s: a 100 MiB image takes about 105 s."""
    ports = (Port("eth0", "ethernet", True, 0, 1e6), Port("eth1", "ethernet", True, 10, 1e6))
    return Driver(make_node(ports=ports))


def test_with_every_link_down_a_download_makes_no_progress_and_stalls_after_timer_download_stalled() -> None:
    """§4: a download depends on the links. With all of them down it makes no progress; after
    timer.download.stalled (600 s) it is cancelled with EVE's "no progress" error, then retried
    on the ticker once timer.download.retry has passed and the links are back."""
    drv = online(_slow_drv())
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: "bos" in drv.node.downloader.downloads and drv.node.downloader.downloads["bos"].state == "running")
    drv.run_for(40)
    down_at = drv.now
    _links(drv, {"eth0", "eth1"})
    frozen = drv.node.report(drv.now)["baseos"]["progress"]
    assert 20 <= frozen <= 60
    assert drv.node.report(drv.now)["baseos"]["status"] == "DOWNLOADING"
    assert drv.node.report(drv.now)["baseos"]["sub_status"] == "DOWNLOAD_INPROGRESS"
    drv.run_for(STALLED - 1)
    assert drv.node.report(drv.now)["baseos"]["progress"] == frozen
    assert not _bos(drv).get("err")
    drv.run_for(2)
    err = _bos(drv)["err"]
    assert err.startswith("Cancelling due to no progress for bos in 600s")
    assert drv.note_times("download_failed") == [pytest.approx(down_at + STALLED)]
    _links(drv, set())
    drv.run_until(lambda: _bos(drv).get("zsw") != ZSwState.DOWNLOAD_STARTED, limit=3 * RETRY)
    restarted = drv.note_times("baseos_download")
    assert drv.now - (down_at + STALLED) >= RETRY + 100  # retry >= 600 s after the error, then ~105 s
    assert not _bos(drv).get("err")  # cleared on success
    assert len(restarted) == 1  # one DownloaderConfig, retried inside the downloader


def test_a_link_outage_shorter_than_the_stall_time_only_delays_the_download() -> None:
    """§4: progress resumes when the link comes back before timer.download.stalled."""
    drv = online(_slow_drv())
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: "bos" in drv.node.downloader.downloads and drv.node.downloader.downloads["bos"].state == "running")
    started = drv.node.downloader.downloads["bos"].since
    drv.run_for(30)
    _links(drv, {"eth0", "eth1"})
    drv.run_for(200)
    _links(drv, set())
    drv.run_until(lambda: _bos(drv).get("zsw") != ZSwState.DOWNLOAD_STARTED, limit=600)
    assert drv.now - started == pytest.approx(100 * MiB / 1e6 + 200, abs=0.5)
    assert not drv.note_times("download_failed")



def test_a_download_running_on_the_cost_0_port_stalls_when_only_the_costly_port_is_left() -> None:
    """§4: the usable ports are those with cost <= network.download.max.cost; losing eth0 (cost 0)
    mid-download leaves eth1 (cost 10) up, which the download may not use: no progress, stall."""
    drv = online(_slow_drv())
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: "bos" in drv.node.downloader.downloads and drv.node.downloader.downloads["bos"].state == "running")
    drv.run_for(30)
    down_at = drv.now
    _links(drv, {"eth0"})
    drv.run_for(STALLED + 1)
    assert drv.node.zedagent.config_received and drv.node.zedagent.config_status.name == "SUCCESS"  # online over eth1
    assert drv.note_times("download_failed") == [pytest.approx(down_at + STALLED)]
    assert _bos(drv)["err"].startswith("Cancelling due to no progress")
    assert zb(drv)["IMGB"].version is None

def test_a_verify_failure_downloads_again_at_most_blob_download_max_retries_times() -> None:
    """§4 / P:cmd/volumemgr/updatestatus.go: a verify failure re-downloads at once while
    RetryCount < blob.download.max.retries (5), then the error stays: FAILED, nothing installed."""
    drv = online(driver())
    img = drv.node.p.images["next"]
    drv.node.p.images["next"] = dataclasses.replace(img, verify_ok=False)
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: drv.node.downloader.downloads.get("bos") is not None and drv.node.downloader.downloads["bos"].state == "verify_failed")
    verify = drv.notes_of("verify_failed")
    assert [d["retry"] for _t, d in verify] == [1, 2, 3, 4, 5, None]
    assert status(drv)[0] == BaseOsStatus.FAILED
    assert "does not match" in _bos(drv)["err"]
    drv.run_for(3 * RETRY)
    assert len(drv.notes_of("verify_failed")) == 6  # no more downloads: the downloader has no error
    assert zb(drv)["IMGB"].version is None


def test_blob_download_max_retries_bounds_the_verify_retries() -> None:
    drv = online(driver())
    drv.ctrl.item("blob.download.max.retries", 1)
    drv.run_for(120)
    img = drv.node.p.images["next"]
    drv.node.p.images["next"] = dataclasses.replace(img, verify_ok=False)
    drv.ctrl.update_to("next", "2.0")
    drv.run_until(lambda: drv.node.downloader.downloads.get("bos") is not None and drv.node.downloader.downloads["bos"].state == "verify_failed")
    assert [d["retry"] for _t, d in drv.notes_of("verify_failed")] == [1, None]


def test_an_app_download_passes_the_same_cost_gate() -> None:
    """§4: 'a device on a cost>0 backup uplink stalls updates and app downloads'."""
    drv = online(driver())
    _links(drv, {"eth0"})
    drv.ctrl.set(apps={"web": _app(1, 256 * MiB)})
    drv.run_for(900)
    app = drv.node.zedmanager.apps["web"]
    assert app["state"] == ZSwState.DOWNLOAD_STARTED
    assert app["err"].startswith("No IP management port addresses with cost <= 0")
    _links(drv, set())  # eth0 back: the next retry passes the gate
    drv.run_until(lambda: drv.node.zedmanager.apps["web"]["state"] == ZSwState.RUNNING, limit=2 * RETRY + 120)
    assert drv.node.zedmanager.apps["web"]["err"] == ""


# ------------------------------------------------------------- scenario: image `download: corrupt` --
_CORRUPT = """\
name: corrupt-download
fleet:
  - profile: qemu-x86_64
    group: dut
images:
  base: {version: 13.4.0}
  next: {version: 13.5.0, download: corrupt, size: 10M}
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, attestation: COMPLETE, within: 5m}
  - baseos_update: {image: next, activate: true}
expect:
  - name: the corrupt image is reported FAILED and never written
    baseos_status: FAILED
    other_partition: {state: unused}
    within: 10m
"""


def _sim_verdict(text: str, path: Path) -> str:
    """The verdict of ``text`` run on the simulator (in ``path``'s directory)."""
    import json

    from eden.run import execute, load_for_backend

    path.write_text(text)
    out = path.with_suffix("")
    execute(load_for_backend(path, "sim"), backend_name="sim", out_dir=out)
    return str(json.loads((out / "summary.json").read_text())["verdict"])


def _refusal(text: str, path: Path, backend: str) -> str:
    from eden.errors import InvalidInput
    from eden.run import load_for_backend

    path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_for_backend(path, backend)
    return str(info.value)


def test_an_image_with_download_corrupt_fails_verification_on_the_simulator(tmp_path: Path) -> None:
    assert _sim_verdict(_CORRUPT, tmp_path / "corrupt.yaml") == "passed"
    assert _sim_verdict(_CORRUPT.replace("download: corrupt, ", ""), tmp_path / "good.yaml") == "failed"


@pytest.mark.parametrize("backend", ["emulated", "qemu"])
def test_download_corrupt_is_refused_at_validation_by_real_backends(tmp_path: Path, backend: str) -> None:
    text = _refusal(_CORRUPT, tmp_path / "corrupt.yaml", backend)
    assert "'download: corrupt' is simulated only" in text
    assert "corrupt.yaml:7:" in text  # file:line:col of the offending key


# ----------------------------------------------------- an app image that fails verification (§4) --
def test_a_corrupt_app_image_is_downloaded_again_at_most_blob_download_max_retries_times() -> None:
    """§4 / P:cmd/volumemgr/updatestatus.go, as for the base OS: each failed verify downloads the
    app's image again at once, at most blob.download.max.retries (5) times; then the app stays
    DOWNLOAD_STARTED with the verifier's error, never gets a volume, and the downloader stops."""
    drv = online(driver())
    drv.ctrl.set(apps={"web": {**_app(1, 256 * MiB, kind="container"), "download": "corrupt"},
                       "db": _app(1, 256 * MiB, kind="container")})
    drv.run_until(lambda: drv.node.downloader.downloads.get("app/web") is not None and drv.node.downloader.downloads["app/web"].state == "verify_failed")
    verify = [d for _t, d in drv.notes_of("verify_failed") if d["key"] == "app/web"]
    assert [d["retry"] for d in verify] == [1, 2, 3, 4, 5, None]
    web = drv.node.zedmanager.apps["web"]
    assert web["state"] == ZSwState.DOWNLOAD_STARTED
    assert web["err"] == "computed sha256 of app/web does not match the configured sha256"
    drv.run_until(lambda: drv.node.zedmanager.apps["db"]["state"] == ZSwState.RUNNING)  # the good one is not held up
    drv.run_for(3 * RETRY)
    assert len([d for _t, d in drv.notes_of("verify_failed") if d["key"] == "app/web"]) == 6
    assert drv.node.zedmanager.apps["web"]["state"] == ZSwState.DOWNLOAD_STARTED and "web" not in drv.node.persist.apps_installed


_CORRUPT_APP = """\
name: corrupt-app
fleet:
  - profile: qemu-x86_64
    group: dut
images:
  base: {version: 13.4.0}
steps:
  - power_on: {}
  - expect: {device_state: ONLINE, within: 5m}
  - deploy_app: {name: web, size: 20M, download: corrupt}
expect:
  - name: the app waits with the verifier's error
    app: {name: web, state: DOWNLOAD_STARTED, error: does not match the configured sha256}
    within: 30m
"""


def test_an_app_with_download_corrupt_reports_the_verify_error_on_the_simulator(tmp_path: Path) -> None:
    assert _sim_verdict(_CORRUPT_APP, tmp_path / "app.yaml") == "passed"
    assert _sim_verdict(_CORRUPT_APP.replace(", download: corrupt", ""), tmp_path / "good.yaml") == "failed"


@pytest.mark.parametrize("backend", ["emulated", "qemu"])
def test_an_app_download_corrupt_is_refused_at_validation_by_real_backends(tmp_path: Path, backend: str) -> None:
    text = _refusal(_CORRUPT_APP.replace("within: 30m", "within: 5m"), tmp_path / "app.yaml", backend)
    assert "step 3 'deploy_app' web: 'download: corrupt' is simulated only" in text, text
    assert "app.yaml:10:" in text, text  # the line of the offending key
