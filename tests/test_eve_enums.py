"""Enum values match the spec tables (/work/shared/reference/eve-behaviour.md)."""

from __future__ import annotations

import pytest

from eve.enums import (
    BOOT_REASONS_CRASH,
    AttestReqType,
    AttestRespType,
    AttestState,
    BaseOsStatus,
    BaseOsSubStatus,
    BootReason,
    ConfigGetStatus,
    DPCState,
    MaintenanceModeReason,
    PartitionState,
    QuoteResponseCode,
    StoreKeysResponse,
    ZDeviceState,
    ZInfoType,
    ZSwState,
    enum_by_name,
)


def test_boot_reason_table() -> None:  # spec §7
    expected = {
        0: "UNSPECIFIED", 1: "FIRST", 2: "REBOOT_CMD", 3: "UPDATE", 4: "FALLBACK",
        5: "DISCONNECT", 6: "FATAL", 7: "OOM", 8: "WATCHDOG_HUNG", 9: "WATCHDOG_PID",
        10: "KERNEL", 11: "POWER_FAIL", 12: "UNKNOWN", 13: "VAULT_FAILED",
        14: "POWEROFF_CMD", 15: "KUBE_TRANSITION", 16: "HW_WATCHDOG", 255: "PARSE_FAIL",
    }
    assert {m.value: m.name for m in BootReason} == expected


def test_device_state_table() -> None:  # spec §7
    names = ["UNSPECIFIED", "ONLINE", "REBOOTING", "MAINTENANCE_MODE", "BASEOS_UPDATING",
             "BOOTING", "PREPARING_POWEROFF", "POWERING_OFF", "PREPARED_POWEROFF"]
    assert [m.name for m in ZDeviceState] == names
    assert [m.value for m in ZDeviceState] == list(range(9))


def test_baseos_status_tables() -> None:  # spec §3
    assert [m.name for m in BaseOsStatus] == [
        "NONE", "DOWNLOADING", "DOWNLOAD_DONE", "UPDATING", "UPDATED", "FALLBACK", "FAILED"]
    assert [m.value for m in BaseOsStatus] == list(range(7))
    assert [m.name for m in BaseOsSubStatus] == [
        "NONE", "DOWNLOAD_INPROGRESS", "VERIFY_INPROGRESS", "UPDATE_INITIALIZING",
        "UPDATE_REBOOTING", "UPDATE_TESTING", "UPDATE_NEED_TEST_CONFIRM", "UPDATE_DEFERRED"]
    assert [m.value for m in BaseOsSubStatus] == list(range(8))


def test_zsw_state_full_table() -> None:  # spec §8
    names = ["INVALID", "INITIAL", "DOWNLOAD_STARTED", "DOWNLOADED", "DELIVERED", "INSTALLED",
             "BOOTING", "RUNNING", "HALTING", "HALTED", "RESTARTING", "PURGING",
             "RESOLVING_TAG", "RESOLVED_TAG", "CREATING_VOLUME", "CREATED_VOLUME", "VERIFYING",
             "VERIFIED", "LOADING", "LOADED", "AWAITNETWORKINSTANCE", "ERROR", "START_DELAYED",
             "PENDING", "SCHEDULING"]
    assert [m.name for m in ZSwState] == names
    assert [m.value for m in ZSwState] == list(range(25))


def test_attestation_enums() -> None:  # spec §2, §5
    assert [m.name for m in AttestState] == [
        "UNSPECIFIED", "NONCE_WAIT", "TPM_QUOTE_WAIT", "TPM_ESCROW_WAIT", "ATTEST_WAIT",
        "ATTEST_ESCROW_WAIT", "RESTART_WAIT", "COMPLETE"]
    assert [m.value for m in AttestState] == list(range(8))
    assert (AttestReqType.CERT, AttestReqType.NONCE, AttestReqType.QUOTE, AttestReqType.STORE_KEYS) == (1, 2, 3, 4)
    assert (AttestRespType.CERT, AttestRespType.NONCE, AttestRespType.QUOTE_RESP,
            AttestRespType.STORE_KEYS) == (1, 2, 3, 4)
    assert (QuoteResponseCode.SUCCESS, QuoteResponseCode.NONCE_MISMATCH,
            QuoteResponseCode.NO_CERT_FOUND, QuoteResponseCode.QUOTE_FAILED) == (1, 2, 3, 4)
    assert (StoreKeysResponse.SUCCESS, StoreKeysResponse.ITOKEN_MISMATCH) == (1, 2)


def test_misc_enums() -> None:
    assert [m.value for m in MaintenanceModeReason] == list(range(7))  # spec §7
    assert MaintenanceModeReason.EDGE_NODE_CERTS_REFUSED == 6
    assert [(m.name, m.value) for m in ConfigGetStatus] == [  # spec §1
        ("SUCCESS", 1), ("FAIL", 2), ("TEMPORARY_FAIL", 3), ("READ_SAVED", 4)]
    assert [m.value for m in DPCState] == list(range(10))  # spec §4
    assert DPCState.FAIL_WITH_IP_AND_DNS == 2 and DPCState.REMOTE_WAIT == 7
    assert [p.value for p in PartitionState] == ["active", "updating", "inprogress", "unused"]
    assert PartitionState.INPROGRESS == "inprogress"
    assert {m.name: m.value for m in ZInfoType if m.value} == {  # spec §2
        "ZI_DEVICE": 1, "ZI_APP": 3, "ZI_NETWORK_INSTANCE": 6, "ZI_VOLUME": 7,
        "ZI_CONTENT_TREE": 8, "ZI_BLOB_LIST": 9, "ZI_APP_INST_META_DATA": 10, "ZI_HARDWARE": 11,
        "ZI_EDGEVIEW": 12, "ZI_LOCATION": 13, "ZI_PATCH_ENVELOPE": 14, "ZI_NTP_SOURCES": 16,
        "ZI_KUBE_CLUSTER": 17, "ZI_KUBE_CLUSTER_UPDATE_STATUS": 18}


def test_crash_boot_reasons() -> None:  # spec §1
    assert BOOT_REASONS_CRASH == {
        BootReason.FALLBACK, BootReason.FATAL, BootReason.OOM, BootReason.WATCHDOG_HUNG,
        BootReason.WATCHDOG_PID, BootReason.VAULT_FAILED, BootReason.HW_WATCHDOG}
    assert BootReason.UPDATE not in BOOT_REASONS_CRASH


@pytest.mark.parametrize(
    ("cls", "text", "member"),
    [
        (BootReason, "fallback", BootReason.FALLBACK),
        (BootReason, "BOOT_REASON_FALLBACK", BootReason.FALLBACK),
        (BootReason, "BootReasonWatchdogHung", BootReason.WATCHDOG_HUNG),
        (BootReason, "4", BootReason.FALLBACK),
        (ZDeviceState, "ZDEVICE_STATE_ONLINE", ZDeviceState.ONLINE),
        (ZDeviceState, "DEVICE_STATE_BASEOS_UPDATING", ZDeviceState.BASEOS_UPDATING),
        (DPCState, "FailWithIPAndDNS", DPCState.FAIL_WITH_IP_AND_DNS),
        (DPCState, "DPCStateRemoteWait", DPCState.REMOTE_WAIT),
        (ConfigGetStatus, "TemporaryFail", ConfigGetStatus.TEMPORARY_FAIL),
        (ConfigGetStatus, "ReadSaved", ConfigGetStatus.READ_SAVED),
        (ZInfoType, "ZiDevice", ZInfoType.ZI_DEVICE),
        (ZInfoType, "network_instance", ZInfoType.ZI_NETWORK_INSTANCE),
        (PartitionState, "inprogress", PartitionState.INPROGRESS),
        (PartitionState, "ACTIVE", PartitionState.ACTIVE),
        (BaseOsSubStatus, "update_testing", BaseOsSubStatus.UPDATE_TESTING),
        (AttestReqType, "ATTEST_REQ_QUOTE", AttestReqType.QUOTE),
    ],
)
def test_enum_by_name(cls: type, text: str, member: object) -> None:
    assert enum_by_name(cls, text) is member


def test_enum_by_name_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="valid names: .*FALLBACK"):
        enum_by_name(BootReason, "REBOOT_PLEASE")
    with pytest.raises(ValueError):
        enum_by_name(BootReason, "99")
