"""swList as EVE writes it (spec §2.2): the agent's encoder and the controller's reader.

Agent end: where the base-OS status of each update stage lands (unlabelled while downloading,
the labelled partition once bound). Controller end: device info written by hand the way EVE's
reportinfo.go does, decoded by the codec and by a real controller process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from eden.controller.setup import init
from eden.controller.testing import DeviceClient, ServeProcess, controller_signing_cert
from eden.wire import codec
from eden.wire.gen import info_pb2
from eve.enums import BaseOsStatus as S
from eve.enums import BaseOsSubStatus as U
from eve.enums import ZSwState as Z

DEV = "5d0767ee-0547-4569-b530-387e526f8cb9"
NEW = "13.5.0"
OLD = "13.4.0"


def _report(sw: list[dict[str, Any]], status: str, sub: str = "NONE", err: str = "", version: str | None = NEW) -> dict[str, Any]:
    return {
        "at": 1.0e9, "state": "ONLINE", "boot_reason": "FIRST", "reboot_reason_text": "", "boot_time": 1.0e9 - 5,
        "restart_counter": 0, "sw": sw,
        "baseos": {"version": version, "image": None, "status": status, "sub_status": sub, "err": err},
        "attestation": "COMPLETE", "maintenance": [], "vault": "unlocked", "dpc_index": 0,
        "reboot_counter": 0, "baseos_update_counter": 0, "apps": {}, "config_items_errors": [],
    }


def _part(label: str, version: str | None, state: str, err: str = "") -> dict[str, Any]:
    return {"partition": label, "version": version, "image": None, "state": state, "err": err}


def _sw_list(report: dict[str, Any]) -> list[info_pb2.ZInfoDevSW]:
    [payload] = codec.encode_request("info", report, device_uuid=DEV)
    msg = info_pb2.ZInfoMsg()
    msg.ParseFromString(payload)
    return list(msg.dinfo.swList)


# ------------------------------------------------------------------------------- agent end --
def test_download_progress_travels_in_an_unlabelled_entry() -> None:
    sw = _sw_list(_report([_part("IMGA", OLD, "active"), _part("IMGB", None, "unused")], "DOWNLOADING", "DOWNLOAD_INPROGRESS"))
    assert [e.partitionLabel for e in sw] == ["IMGA", "IMGB", ""]
    cur, other, bos = sw
    assert (bos.shortVersion, bos.userStatus, bos.subStatus) == (NEW, S.DOWNLOADING,
                                                                 U.DOWNLOAD_INPROGRESS)
    assert bos.status == Z.DOWNLOAD_STARTED
    # the labelled entries get what EVE's addUserSwInfo gives a bare partition
    assert (cur.status, cur.userStatus, cur.activated) == (Z.INSTALLED, S.UPDATED, True)
    assert (other.status, other.userStatus) == (Z.INITIAL, S.NONE)


def test_installed_update_moves_to_the_labelled_other_entry() -> None:
    sw = _sw_list(_report([_part("IMGA", OLD, "active"), _part("IMGB", NEW, "updating")], "UPDATING", "UPDATE_REBOOTING"))
    assert [e.partitionLabel for e in sw] == ["IMGA", "IMGB"]  # no unlabelled entry any more
    other = sw[1]
    assert (other.shortVersion, other.partitionState, other.status) == (NEW, "updating", Z.INSTALLED)
    assert (other.userStatus, other.subStatus) == (S.UPDATING, U.UPDATE_REBOOTING)


def test_test_window_is_on_the_current_entry_and_the_old_one_shows_fallback() -> None:
    sw = _sw_list(_report([_part("IMGB", NEW, "inprogress"), _part("IMGA", OLD, "active")], "UPDATING", "UPDATE_TESTING"))
    assert len(sw) == 2
    assert (sw[0].shortVersion, sw[0].subStatus) == (NEW, U.UPDATE_TESTING)
    assert sw[1].userStatus == S.FALLBACK  # §2.2: old partition, not activated


def test_fallback_failure_is_on_the_failed_other_entry() -> None:
    text = "Exceeded fallback outage"
    sw = _sw_list(_report([_part("IMGA", OLD, "active"), _part("IMGB", NEW, "inprogress", text)], "FAILED", err=text))
    assert len(sw) == 2
    assert (sw[1].userStatus, sw[1].swErr.description) == (S.FAILED, text)


def test_too_early_and_not_activated_stay_unlabelled() -> None:
    parts = [_part("IMGA", OLD, "inprogress"), _part("IMGB", "13.3.0", "active")]
    sw = _sw_list(_report(parts, "UPDATING", "UPDATE_DEFERRED"))
    assert sw[2].partitionLabel == "" and sw[2].status == Z.DELIVERED
    assert sw[2].subStatus == U.UPDATE_DEFERRED


def test_an_unused_partition_holding_the_version_is_not_bound() -> None:
    sw = _sw_list(_report([_part("IMGA", OLD, "active"), _part("IMGB", NEW, "unused")], "DOWNLOADING", "DOWNLOAD_INPROGRESS"))
    assert [e.partitionLabel for e in sw] == ["IMGA", "IMGB", ""]
    assert sw[1].userStatus == S.NONE


def test_bad_status_name_is_a_codec_error() -> None:
    with pytest.raises(codec.CodecError, match="BaseOsStatus"):
        _sw_list(_report([_part("IMGA", OLD, "active"), _part("IMGB", NEW, "updating")], "SIDEWAYS"))


# -------------------------------------------------------------------------- controller end --
def _eve_info(*entries: info_pb2.ZInfoDevSW) -> bytes:
    """Device info as EVE's reportinfo.go writes it: labelled partitions, then unattached entries."""
    msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE, devId=DEV)
    msg.atTimeStamp.seconds = 1_000_000
    msg.dinfo.state = info_pb2.DEVICE_STATE_BASEOS_UPDATING
    msg.dinfo.swList.extend(entries)
    return msg.SerializeToString()


def _labelled(label: str, version: str, state: str, activated: bool, user: int, sub: int = 0, err: str = "") -> info_pb2.ZInfoDevSW:
    e = info_pb2.ZInfoDevSW(partitionLabel=label, shortVersion=version, partitionState=state, activated=activated,
                            status=Z.INSTALLED, userStatus=user, subStatus=sub)
    if err:
        e.swErr.description = err
    return e


UPDATING_IMGB = (
    _labelled("IMGA", OLD, "active", True, S.UPDATED),
    _labelled("IMGB", NEW, "updating", False, S.UPDATING, U.UPDATE_REBOOTING),
)


def test_labelled_progress_is_read_for_the_configured_version() -> None:
    got = codec.decode_request("info", _eve_info(*UPDATING_IMGB), baseos_version=NEW, image_of_version={NEW: "next"})
    assert got["report"]["baseos"] == {"version": NEW, "image": "next", "status": "UPDATING",
                                       "sub_status": "UPDATE_REBOOTING", "err": "", "progress": 0}
    # the running image's own UPDATED is not the update's status
    got = codec.decode_request("info", _eve_info(*UPDATING_IMGB), baseos_version=OLD)
    assert got["report"]["baseos"]["status"] == "UPDATED"
    # no base OS configured: the labelled entries say nothing about one
    assert codec.decode_request("info", _eve_info(*UPDATING_IMGB))["report"]["baseos"]["status"] == "NONE"


def test_unlabelled_entry_wins_and_early_boot_entries_are_ignored() -> None:
    early = [info_pb2.ZInfoDevSW(status=Z.INITIAL), info_pb2.ZInfoDevSW(status=Z.INITIAL)]
    dl = info_pb2.ZInfoDevSW(shortVersion=NEW, status=Z.DOWNLOAD_STARTED,
                             userStatus=S.DOWNLOADING, subStatus=U.DOWNLOAD_INPROGRESS)
    got = codec.decode_request("info", _eve_info(*early, dl), baseos_version=NEW)["report"]
    assert got["baseos"]["status"] == "DOWNLOADING" and got["sw"] == []
    assert codec.decode_request("info", _eve_info(*early))["report"]["baseos"]["version"] is None


def test_after_a_fallback_the_failed_other_entry_gives_failed() -> None:
    failed = (
        _labelled("IMGA", OLD, "active", True, S.UPDATED),
        _labelled("IMGB", NEW, "inprogress", False, S.FAILED, err="Exceeded fallback outage"),
    )
    bos = codec.decode_request("info", _eve_info(*failed), baseos_version=NEW)["report"]["baseos"]
    assert (bos["status"], bos["err"]) == ("FAILED", "Exceeded fallback outage")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("ctl") / "c"
    init(root)
    with ServeProcess(root) as proc:
        yield proc


def test_real_controller_reads_the_labelled_entry(server: ServeProcess) -> None:
    admin = server.admin()
    dev = DeviceClient(server.layout.root, server.info["api_port"], "SWLIST-1")
    try:
        admin.preregister(dev.serial, config={"items": {}})
        dev.onboard_fully(controller_signing_cert(dev))
        admin.set_baseos(dev.serial, "next", NEW)
        msg = info_pb2.ZInfoMsg()
        msg.ParseFromString(_eve_info(*UPDATING_IMGB))
        msg.devId = dev.uuid
        assert dev.post("info", msg.SerializeToString())[0] == 201
        bos = admin.device(dev.serial)["info"]["baseos"]
        assert (bos["version"], bos["image"], bos["status"]) == (NEW, "next", "UPDATING")
    finally:
        dev.close()


def test_download_progress_travels_in_zinfodevsw_download_progress() -> None:
    """§3 table: DOWNLOAD_STARTED reads DOWNLOADING with its progress (ZInfoDevSW.downloadProgress = 10)."""
    dl = info_pb2.ZInfoDevSW(shortVersion=NEW, status=Z.DOWNLOAD_STARTED, userStatus=S.DOWNLOADING,
                             subStatus=U.DOWNLOAD_INPROGRESS, downloadProgress=42)
    got = codec.decode_request("info", _eve_info(dl), baseos_version=NEW)["report"]
    assert got["baseos"]["status"] == "DOWNLOADING" and got["baseos"]["progress"] == 42
