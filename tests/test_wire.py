"""eden.wire: field numbers on the wire, enum values, envelopes, PKI, stale generated code."""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.util
import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import descriptor as _d

from eden.wire import pki, signing
from eden.wire.gen import (
    attest_pb2,
    auth_pb2,
    certs_pb2,
    common_pb2,
    config_pb2,
    info_pb2,
    metrics_pb2,
    register_pb2,
    uuid_pb2,
)
from eve import enums

ROOT = Path(__file__).resolve().parent.parent
F = _d.FieldDescriptor


# -- helpers ---------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def top_level_tags(data: bytes) -> list[tuple[int, int]]:
    """(field number, wire type) of each top-level field, in order."""
    tags, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        tags.append((number, wire))
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:  # pragma: no cover
            raise AssertionError(f"unexpected wire type {wire}")
    return tags


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.create_root_ca()


@pytest.fixture(scope="module")
def signer(ca: pki.Issued) -> pki.Issued:
    return pki.create_controller_signing(ca)


@pytest.fixture(scope="module")
def other(ca: pki.Issued) -> pki.Issued:
    return pki.create_controller_signing(ca, "someone else")


# -- field numbers and types (spec §2) -------------------------------------------------

MSG, STR, BYTES, BOOL, U32, U64, I64, ENUM = (
    F.TYPE_MESSAGE, F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_BOOL,
    F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_INT64, F.TYPE_ENUM,
)

SPEC_FIELDS = [
    (auth_pb2.AuthBody, "payload", 1, BYTES),
    (auth_pb2.AuthContainer, "protectedPayload", 1, MSG),
    (auth_pb2.AuthContainer, "algo", 2, ENUM),
    (auth_pb2.AuthContainer, "senderCertHash", 3, BYTES),
    (auth_pb2.AuthContainer, "signatureHash", 4, BYTES),
    (auth_pb2.AuthContainer, "senderCert", 5, BYTES),
    (register_pb2.ZRegisterMsg, "pemCert", 2, BYTES),
    (register_pb2.ZRegisterMsg, "serial", 3, STR),
    (register_pb2.ZRegisterMsg, "softSerial", 4, STR),
    (uuid_pb2.UuidResponse, "uuid", 1, STR),
    (uuid_pb2.UuidResponse, "manufacturer", 2, STR),
    (uuid_pb2.UuidResponse, "product_name", 3, STR),
    (certs_pb2.ZCert, "type", 3, ENUM),
    (certs_pb2.ZCert, "cert", 4, BYTES),
    (config_pb2.ConfigRequest, "configHash", 1, STR),
    (config_pb2.ConfigRequest, "integrity_token", 2, BYTES),
    (config_pb2.ConfigResponse, "config", 1, MSG),
    (config_pb2.ConfigResponse, "configHash", 2, STR),
    (config_pb2.EdgeDevConfig, "id", 1, MSG),
    (config_pb2.EdgeDevConfig, "apps", 4, MSG),
    (config_pb2.EdgeDevConfig, "reboot", 9, MSG),
    (config_pb2.EdgeDevConfig, "configItems", 11, MSG),
    (config_pb2.EdgeDevConfig, "controllercert_confighash", 22, STR),
    (config_pb2.EdgeDevConfig, "maintenance_mode", 24, BOOL),
    (config_pb2.EdgeDevConfig, "controller_epoch", 25, I64),
    (config_pb2.EdgeDevConfig, "baseos", 26, MSG),
    (config_pb2.EdgeDevConfig, "shutdown", 34, MSG),
    (config_pb2.EdgeDevConfig, "device_name", 35, STR),
    (config_pb2.EdgeDevConfig, "config_timestamp", 40, MSG),
    (config_pb2.UUIDandVersion, "uuid", 1, STR),
    (config_pb2.UUIDandVersion, "version", 2, STR),
    (config_pb2.ConfigItem, "key", 1, STR),
    (config_pb2.ConfigItem, "value", 2, STR),
    (config_pb2.BaseOS, "content_tree_uuid", 1, STR),
    (config_pb2.BaseOS, "retry_update", 2, MSG),
    (config_pb2.BaseOS, "activate", 3, BOOL),
    (config_pb2.BaseOS, "base_os_version", 4, STR),
    (config_pb2.DeviceOpsCmd, "counter", 2, U32),
    (config_pb2.DeviceOpsCmd, "desiredState", 3, BOOL),
    (config_pb2.DeviceOpsCmd, "opsTime", 4, STR),
    (config_pb2.AppInstanceConfig, "uuidandversion", 1, MSG),
    (config_pb2.AppInstanceConfig, "displayname", 2, STR),
    (config_pb2.AppInstanceConfig, "fixedresources", 3, MSG),
    (config_pb2.AppInstanceConfig, "activate", 5, BOOL),
    (config_pb2.AppInstanceConfig, "restart", 9, MSG),
    (config_pb2.AppInstanceConfig, "purge", 10, MSG),
    (config_pb2.AppInstanceConfig, "volumeRefList", 16, MSG),
    (config_pb2.AppInstanceConfig, "start_delay_in_seconds", 19, U32),
    (config_pb2.InstanceOpsCmd, "counter", 2, U32),
    (info_pb2.ZInfoMsg, "ztype", 1, ENUM),
    (info_pb2.ZInfoMsg, "devId", 2, STR),
    (info_pb2.ZInfoMsg, "dinfo", 3, MSG),
    (info_pb2.ZInfoMsg, "ainfo", 5, MSG),
    (info_pb2.ZInfoMsg, "atTimeStamp", 6, MSG),
    (info_pb2.ZInfoDevice, "bootTime", 18, MSG),
    (info_pb2.ZInfoDevice, "swList", 19, MSG),
    (info_pb2.ZInfoDevice, "lastRebootReason", 22, STR),
    (info_pb2.ZInfoDevice, "lastRebootTime", 23, MSG),
    (info_pb2.ZInfoDevice, "systemAdapter", 24, MSG),
    (info_pb2.ZInfoDevice, "restartCounter", 25, U32),
    (info_pb2.ZInfoDevice, "dataSecAtRestInfo", 29, MSG),
    (info_pb2.ZInfoDevice, "rebootConfigCounter", 33, U32),
    (info_pb2.ZInfoDevice, "last_boot_reason", 34, ENUM),
    (info_pb2.ZInfoDevice, "maintenance_mode", 38, BOOL),
    (info_pb2.ZInfoDevice, "baseos_update_counter", 43, U32),
    (info_pb2.ZInfoDevice, "state", 44, ENUM),
    (info_pb2.ZInfoDevice, "maintenance_mode_reasons", 46, ENUM),
    (info_pb2.ZInfoDevice, "shutdown_config_counter", 49, U32),
    (info_pb2.ZInfoDevice, "attestation_info", 50, MSG),
    (info_pb2.ZInfoDevSW, "activated", 2, BOOL),
    (info_pb2.ZInfoDevSW, "partitionLabel", 3, STR),
    (info_pb2.ZInfoDevSW, "partitionDevice", 4, STR),
    (info_pb2.ZInfoDevSW, "partitionState", 5, STR),
    (info_pb2.ZInfoDevSW, "status", 6, ENUM),
    (info_pb2.ZInfoDevSW, "shortVersion", 7, STR),
    (info_pb2.ZInfoDevSW, "longVersion", 8, STR),
    (info_pb2.ZInfoDevSW, "swErr", 9, MSG),
    (info_pb2.ZInfoDevSW, "downloadProgress", 10, U32),
    (info_pb2.ZInfoDevSW, "userStatus", 11, ENUM),
    (info_pb2.ZInfoDevSW, "subStatusStr", 12, STR),
    (info_pb2.ZInfoDevSW, "subStatus", 13, ENUM),
    (info_pb2.ZInfoDevSW, "subStatusProgress", 14, U32),
    (info_pb2.ErrorInfo, "description", 1, STR),
    (info_pb2.ErrorInfo, "timestamp", 2, MSG),
    (info_pb2.SystemAdapterInfo, "currentIndex", 1, U32),
    (info_pb2.SystemAdapterInfo, "status", 2, MSG),
    (info_pb2.DevicePortStatus, "key", 2, STR),
    (info_pb2.DevicePortStatus, "timePriority", 3, MSG),
    (info_pb2.DevicePortStatus, "lastFailed", 4, MSG),
    (info_pb2.DevicePortStatus, "lastSucceeded", 5, MSG),
    (info_pb2.DevicePortStatus, "ports", 6, MSG),
    (info_pb2.DevicePortStatus, "lastError", 7, STR),
    (info_pb2.DevicePort, "ifname", 1, STR),
    (info_pb2.DevicePort, "isMgmt", 3, BOOL),
    (info_pb2.DevicePort, "up", 26, BOOL),
    (info_pb2.DevicePort, "err", 29, MSG),
    (info_pb2.DevicePort, "cost", 32, U32),
    (info_pb2.ZInfoApp, "AppID", 1, STR),
    (info_pb2.ZInfoApp, "appVersion", 2, STR),
    (info_pb2.ZInfoApp, "AppName", 7, STR),
    (info_pb2.ZInfoApp, "bootTime", 12, MSG),
    (info_pb2.ZInfoApp, "appErr", 14, MSG),
    (info_pb2.ZInfoApp, "state", 15, ENUM),
    (info_pb2.ZInfoApp, "volumeRefs", 17, STR),
    (metrics_pb2.ZMetricMsg, "devID", 1, STR),
    (metrics_pb2.ZMetricMsg, "atTimeStamp", 3, MSG),
    (metrics_pb2.ZMetricMsg, "dm", 4, MSG),
    (metrics_pb2.deviceMetric, "zedcloud", 4, MSG),
    (metrics_pb2.deviceMetric, "last_received_config", 18, MSG),
    (metrics_pb2.deviceMetric, "last_processed_config", 19, MSG),
    (metrics_pb2.deviceMetric, "dormant_time_in_seconds", 22, U64),
    (metrics_pb2.zedcloudMetric, "ifName", 1, STR),
    (metrics_pb2.zedcloudMetric, "failures", 2, U64),
    (metrics_pb2.zedcloudMetric, "success", 3, U64),
    (metrics_pb2.zedcloudMetric, "lastFailure", 4, MSG),
    (metrics_pb2.zedcloudMetric, "lastSuccess", 5, MSG),
    (attest_pb2.ZAttestReq, "reqType", 1, ENUM),
    (attest_pb2.ZAttestReq, "quote", 2, MSG),
    (attest_pb2.ZAttestReq, "certs", 3, MSG),
    (attest_pb2.ZAttestReq, "storage_keys", 4, MSG),
    (attest_pb2.AttestStorageKeys, "integrity_token", 1, BYTES),
    (attest_pb2.AttestStorageKeys, "keys", 2, MSG),
    (attest_pb2.ZAttestResponse, "respType", 1, ENUM),
    (attest_pb2.ZAttestResponse, "nonce", 2, MSG),
    (attest_pb2.ZAttestResponse, "quoteResp", 3, MSG),
    (attest_pb2.ZAttestResponse, "storage_keys_resp", 4, MSG),
    (attest_pb2.ZAttestNonceResp, "nonce", 1, BYTES),
    (attest_pb2.ZAttestQuoteResp, "response", 1, ENUM),
    (attest_pb2.ZAttestQuoteResp, "integrity_token", 2, BYTES),
    (attest_pb2.ZAttestQuoteResp, "keys", 3, MSG),
    (attest_pb2.ZAttestQuote, "attestData", 1, BYTES),
    (attest_pb2.ZAttestQuote, "signature", 2, BYTES),
    (attest_pb2.ZAttestQuote, "pcr_values", 3, MSG),
    (attest_pb2.ZAttestQuote, "versions", 5, MSG),
    (attest_pb2.ZAttestQuote, "tpm_binary_event_log", 7, BYTES),
]


@pytest.mark.parametrize(
    "cls,name,number,ftype", SPEC_FIELDS, ids=[f"{c.__name__}.{n}" for c, n, _, _ in SPEC_FIELDS]
)
def test_spec_field_numbers_and_types(cls, name, number, ftype) -> None:
    field = cls.DESCRIPTOR.fields_by_name[name]
    assert field.number == number
    assert field.type == ftype


def test_legacy_base_field_is_reserved() -> None:
    desc = config_pb2.EdgeDevConfig.DESCRIPTOR
    assert 8 not in desc.fields_by_number
    assert "base" not in desc.fields_by_name


def test_info_oneof_members() -> None:
    oneof = info_pb2.ZInfoMsg.DESCRIPTOR.oneofs_by_name["InfoContent"]
    assert {f.name: f.number for f in oneof.fields} == {"dinfo": 3, "ainfo": 5, "niinfo": 12, "vinfo": 13,
                                                        "cinfo": 14, "hwinfo": 18}


def test_raw_tag_bytes_on_the_wire() -> None:
    # EdgeDevConfig.baseos = 26, length-delimited: key (26<<3)|2 = 210 -> varint d2 01.
    cfg = config_pb2.EdgeDevConfig(baseos=config_pb2.BaseOS(activate=True))
    assert cfg.SerializeToString() == b"\xd2\x01\x02\x18\x01"  # BaseOS.activate = 3, varint
    # ZInfoDevice.state = 44, varint: key 44<<3 = 352 -> e0 02.
    dev = info_pb2.ZInfoDevice(state=info_pb2.DEVICE_STATE_ONLINE)
    assert dev.SerializeToString() == b"\xe0\x02\x01"
    # ConfigRequest.configHash = 1 is a string (wire type 2), integrity_token = 2 bytes.
    req = config_pb2.ConfigRequest(configHash="abc", integrity_token=b"\x01")
    assert req.SerializeToString() == b"\x0a\x03abc\x12\x01\x01"
    # ZInfoDevice.attestation_info = 50: key (50<<3)|2 = 402 -> 92 03.
    dev = info_pb2.ZInfoDevice(
        attestation_info=info_pb2.AttestationInfo(state=info_pb2.ATTESTATION_STATE_COMPLETE)
    )
    assert dev.SerializeToString() == b"\x92\x03\x02\x08\x07"
    # AuthContainer: algo = 2 (varint), senderCertHash = 3, signatureHash = 4.
    box = auth_pb2.AuthContainer(algo=common_pb2.HASH_SHA256_16BYTES, senderCertHash=b"h", signatureHash=b"s")
    assert box.SerializeToString() == b"\x10\x01\x1a\x01h\x22\x01s"


def test_top_level_tags_of_full_messages() -> None:
    cfg = config_pb2.EdgeDevConfig(
        id=config_pb2.UUIDandVersion(uuid="u", version="1"),
        apps=[config_pb2.AppInstanceConfig(displayname="a")],
        reboot=config_pb2.DeviceOpsCmd(counter=1),
        configItems=[config_pb2.ConfigItem(key="timer.config.interval", value="10")],
        maintenance_mode=True,
        controller_epoch=3,
        baseos=config_pb2.BaseOS(base_os_version="14.5.0"),
        shutdown=config_pb2.DeviceOpsCmd(counter=1),
        device_name="d",
    )
    cfg.config_timestamp.FromSeconds(1)
    assert top_level_tags(cfg.SerializeToString()) == [
        (1, 2), (4, 2), (9, 2), (11, 2), (24, 0), (25, 0), (26, 2), (34, 2), (35, 2), (40, 2)
    ]
    msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_APP, devId="d", ainfo=info_pb2.ZInfoApp(AppID="a"))
    msg.atTimeStamp.FromSeconds(1)
    assert top_level_tags(msg.SerializeToString()) == [(1, 0), (2, 2), (5, 2), (6, 2)]
    metric = metrics_pb2.ZMetricMsg(devID="d", dm=metrics_pb2.deviceMetric(dormant_time_in_seconds=180))
    assert top_level_tags(metric.SerializeToString()) == [(1, 2), (4, 2)]


# -- enums ---------------------------------------------------------------------------

ENUM_PAIRS = [
    (info_pb2.BootReason, enums.BootReason, "BOOT_REASON_"),
    (info_pb2.ZDeviceState, enums.ZDeviceState, "DEVICE_STATE_"),
    (info_pb2.ZSwState, enums.ZSwState, "SW_STATE_"),
    (info_pb2.BaseOsStatus, enums.BaseOsStatus, "BASE_OS_STATUS_"),
    (info_pb2.BaseOsSubStatus, enums.BaseOsSubStatus, "BASE_OS_SUB_STATUS_"),
    (info_pb2.AttestationState, enums.AttestState, "ATTESTATION_STATE_"),
    (info_pb2.MaintenanceModeReason, enums.MaintenanceModeReason, "MAINTENANCE_MODE_REASON_"),
    (info_pb2.ZInfoTypes, enums.ZInfoType, ""),
    (attest_pb2.ZAttestReqType, enums.AttestReqType, "ATTEST_REQ_TYPE_"),
    (attest_pb2.ZAttestRespType, enums.AttestRespType, "ATTEST_RESP_TYPE_"),
    (attest_pb2.ZAttestResponseCode, enums.QuoteResponseCode, "QUOTE_RESPONSE_CODE_"),
    (attest_pb2.AttestStorageKeysResponseCode, enums.StoreKeysResponse, "STORE_KEYS_RESPONSE_"),
]


@pytest.mark.parametrize("proto_enum,py_enum,prefix", ENUM_PAIRS, ids=[p[1].__name__ for p in ENUM_PAIRS])
def test_enum_values_match_simulator(proto_enum, py_enum, prefix) -> None:
    wire = {}
    for value in proto_enum.DESCRIPTOR.values:
        assert value.name.startswith(prefix), value.name
        wire[value.name[len(prefix):]] = value.number
    assert wire == {m.name: m.value for m in py_enum}


def test_other_spec_enums() -> None:
    assert dict(common_pb2.HashAlgorithm.items()) == {
        "HASH_NONE": 0, "HASH_SHA256_16BYTES": 1, "HASH_SHA256_32BYTES": 2}
    assert certs_pb2.CERT_TYPE_CONTROLLER_SIGNING == 1
    assert certs_pb2.CERT_TYPE_CONTROLLER_INTERMEDIATE == 2
    assert certs_pb2.CERT_TYPE_DEVICE_RESTRICTED_SIGNING == 11
    assert certs_pb2.CERT_TYPE_DEVICE_ENDORSEMENT == 12


# -- round trips -----------------------------------------------------------------------


def test_round_trip_config_info_metrics_attest() -> None:
    app = config_pb2.AppInstanceConfig(
        uuidandversion=config_pb2.UUIDandVersion(uuid="a1", version="2"),
        displayname="nginx",
        fixedresources=config_pb2.VmConfig(memory=512 * 1024, maxmem=512 * 1024, vcpus=2),
        activate=True,
        restart=config_pb2.InstanceOpsCmd(counter=3),
        purge=config_pb2.InstanceOpsCmd(counter=1),
        start_delay_in_seconds=30,
    )
    resp = config_pb2.ConfigResponse(
        configHash="deadbeef",
        config=config_pb2.EdgeDevConfig(
            apps=[app],
            baseos=config_pb2.BaseOS(
                content_tree_uuid="ct", retry_update=config_pb2.DeviceOpsCmd(counter=2),
                activate=True, base_os_version="14.5.1",
            ),
            controller_epoch=-1,
        ),
    )
    assert config_pb2.ConfigResponse.FromString(resp.SerializeToString()) == resp

    sw = info_pb2.ZInfoDevSW(
        activated=True, partitionLabel="IMGB", partitionState="inprogress",
        status=info_pb2.SW_STATE_INSTALLED, shortVersion="14.5.1",
        userStatus=info_pb2.BASE_OS_STATUS_UPDATING,
        subStatus=info_pb2.BASE_OS_SUB_STATUS_UPDATE_TESTING, subStatusProgress=570,
        swErr=info_pb2.ErrorInfo(description="boom"),
    )
    dev = info_pb2.ZInfoDevice(
        swList=[sw], restartCounter=7, last_boot_reason=info_pb2.BOOT_REASON_PARSE_FAIL,
        maintenance_mode_reasons=[info_pb2.MAINTENANCE_MODE_REASON_VAULT_LOCKED_UP],
        state=info_pb2.DEVICE_STATE_BASEOS_UPDATING,
    )
    dev.bootTime.FromSeconds(1_700_000_000)
    msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE, devId="dev", dinfo=dev)
    back = info_pb2.ZInfoMsg.FromString(msg.SerializeToString())
    assert back == msg and back.WhichOneof("InfoContent") == "dinfo"
    assert back.dinfo.last_boot_reason == enums.BootReason.PARSE_FAIL == 255

    req = attest_pb2.ZAttestReq(
        reqType=attest_pb2.ATTEST_REQ_TYPE_QUOTE,
        quote=attest_pb2.ZAttestQuote(
            attestData=b"a", signature=b"s",
            pcr_values=[attest_pb2.TpmPCRValue(index=i, hash_algo=attest_pb2.TPM_HASH_ALGO_SHA256,
                                               value=bytes(32)) for i in range(16)],
        ),
        certs=[certs_pb2.ZCert(type=certs_pb2.CERT_TYPE_DEVICE_ENDORSEMENT, cert=b"pem")],
    )
    assert attest_pb2.ZAttestReq.FromString(req.SerializeToString()) == req


def test_unknown_fields_survive_a_round_trip() -> None:
    # EdgeDevConfig.networks = 5 is not modelled; a controller may still send it.
    raw = config_pb2.EdgeDevConfig(device_name="d").SerializeToString() + b"\x2a\x02\x08\x01"
    cfg = config_pb2.EdgeDevConfig.FromString(raw)
    assert cfg.device_name == "d"
    assert cfg.SerializeToString() == raw


# -- signing ---------------------------------------------------------------------------


def test_seal_and_open(signer: pki.Issued) -> None:
    payload = config_pb2.ConfigRequest(configHash="x").SerializeToString()
    box = signing.seal(payload, signer.key, signer.cert)
    wire = box.SerializeToString()
    known = signing.cert_index([signer.cert])
    assert signing.open_container(auth_pb2.AuthContainer.FromString(wire), known) == payload
    assert box.algo == common_pb2.HASH_SHA256_32BYTES
    assert not box.senderCert


def test_empty_payload_is_still_present(signer: pki.Issued) -> None:
    box = signing.seal(uuid_pb2.UuidRequest().SerializeToString(), signer.key, signer.cert)
    again = auth_pb2.AuthContainer.FromString(box.SerializeToString())
    assert signing.open_container(again, signing.cert_index([signer.cert])) == b""


def test_tampered_payload_is_a_bad_signature(signer: pki.Issued) -> None:
    box = signing.seal(b"payload", signer.key, signer.cert)
    box.protectedPayload.payload = b"pAyload"
    with pytest.raises(signing.BadSignature):
        signing.open_container(box, signing.cert_index([signer.cert]))


def test_other_signer_is_an_unknown_hash(signer: pki.Issued, other: pki.Issued) -> None:
    box = signing.seal(b"payload", other.key, other.cert)
    with pytest.raises(signing.UnknownCertHash):
        signing.open_container(box, signing.cert_index([signer.cert]))


def test_wrong_key_for_the_claimed_cert_is_a_bad_signature(signer: pki.Issued, other: pki.Issued) -> None:
    box = signing.seal(b"payload", other.key, signer.cert)  # claims signer, signed by other
    with pytest.raises(signing.BadSignature):
        signing.open_container(box, signing.cert_index([signer.cert, other.cert]))


@pytest.mark.parametrize("algo,length", [(signing.SHA256_16BYTES, 16), (signing.SHA256_32BYTES, 32)])
def test_cert_hash_lengths(signer: pki.Issued, algo: int, length: int) -> None:
    der = signer.cert.public_bytes(serialization.Encoding.DER)
    expected = hashlib.sha256(der).digest()[:length]
    assert signing.cert_hash(signer.cert, algo) == expected
    assert signing.cert_hash(pki.cert_pem(signer.cert), algo) == expected  # PEM input
    assert signing.cert_hash(der, algo) == expected  # DER input
    box = signing.seal(b"p", signer.key, signer.cert, algo=algo)
    assert box.algo == algo and box.senderCertHash == expected
    assert signing.open_container(box, {expected: signer.cert}) == b"p"


def test_hash_length_must_match_algorithm(signer: pki.Issued) -> None:
    box = signing.seal(b"p", signer.key, signer.cert, algo=signing.SHA256_32BYTES)
    box.algo = signing.SHA256_16BYTES
    with pytest.raises(signing.UnknownCertHash):
        signing.open_container(box, signing.cert_index([signer.cert]))


def test_unsupported_algorithm(signer: pki.Issued) -> None:
    box = signing.seal(b"p", signer.key, signer.cert)
    box.algo = common_pb2.HASH_NONE
    with pytest.raises(signing.UnsupportedAlgorithm):
        signing.open_container(box, signing.cert_index([signer.cert]))
    box.algo = 99  # open enum: unknown values parse
    with pytest.raises(signing.UnsupportedAlgorithm):
        signing.open_container(auth_pb2.AuthContainer.FromString(box.SerializeToString()),
                               signing.cert_index([signer.cert]))


def test_missing_payload_and_unsigned(signer: pki.Issued) -> None:
    known = signing.cert_index([signer.cert])
    with pytest.raises(signing.MissingPayload):
        signing.open_container(auth_pb2.AuthContainer(), known)
    box = signing.seal(b"p", signer.key, signer.cert)
    box.ClearField("signatureHash")
    with pytest.raises(signing.BadSignature):
        signing.open_container(box, known)
    box = signing.seal(b"p", signer.key, signer.cert)
    box.signatureHash = signing.raw_to_der(box.signatureHash)  # DER is not accepted on the wire
    with pytest.raises(signing.BadSignature):
        signing.open_container(box, known)
    assert issubclass(signing.BadSignature, signing.AuthContainerError)


def test_register_carries_the_sender_cert() -> None:
    onboard = pki.create_onboarding()
    msg = register_pb2.ZRegisterMsg(
        pemCert=base64.b64encode(pki.cert_pem(pki.create_device("dev").cert)), serial="SN1")
    box = signing.seal(msg.SerializeToString(), onboard.key, onboard.cert, include_cert=True)
    assert base64.b64decode(box.senderCert) == pki.cert_pem(onboard.cert)
    with pytest.raises(signing.UnknownCertHash):
        signing.open_container(box, {})
    opened = signing.verify_container(box, {}, allow_sender_cert=True)
    assert opened.cert == onboard.cert
    assert register_pb2.ZRegisterMsg.FromString(opened.payload).serial == "SN1"
    # A senderCert that does not match senderCertHash is not used.
    box.senderCert = base64.b64encode(pki.cert_pem(pki.create_onboarding().cert))
    with pytest.raises(signing.UnknownCertHash):
        signing.verify_container(box, {}, allow_sender_cert=True)


def test_raw_signature_is_r_s_and_verifies_as_der(signer: pki.Issued) -> None:
    data = b"some payload"
    raw = signing.sign(signer.key, data)
    assert len(raw) == 64
    der = signing.raw_to_der(raw)
    signer.cert.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))  # raises if bad
    assert signing.der_to_raw(der) == raw
    assert signing.verify(signer.cert, data, raw)
    assert not signing.verify(signer.cert, data + b"!", raw)
    assert not signing.verify(signer.cert, data, raw[:63])
    # A signature made by cryptography in DER converts to a raw one that verifies.
    der2 = signer.key.sign(data, ec.ECDSA(hashes.SHA256()))
    assert signing.verify(signer.cert.public_key(), data, signing.der_to_raw(der2))


# -- PKI ---------------------------------------------------------------------------------


def test_pki_chain(ca: pki.Issued, signer: pki.Issued) -> None:
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert pki.is_issued_by(ca.cert, ca.cert)
    assert pki.is_issued_by(signer.cert, ca.cert)
    assert not signer.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    tls = pki.create_controller_tls(ca)
    assert pki.is_issued_by(tls.cert, ca.cert)
    san = tls.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    other_ca = pki.create_root_ca("other")
    assert not pki.is_issued_by(signer.cert, other_ca.cert)
    for issued in (ca, signer, tls, pki.create_onboarding(), pki.create_device("d")):
        assert isinstance(issued.key.curve, ec.SECP256R1)
        assert isinstance(issued.cert.public_key().curve, ec.SECP256R1)


def test_controller_certs_message(ca: pki.Issued, signer: pki.Issued) -> None:
    ecdh = pki.create_controller_ecdh(ca)
    msg = certs_pb2.ZControllerCert.FromString(
        pki.controller_certs_message(signer.cert, ecdh.cert, [ca.cert]).SerializeToString())
    assert [c.type for c in msg.certs] == [
        certs_pb2.CERT_TYPE_CONTROLLER_SIGNING, certs_pb2.CERT_TYPE_CONTROLLER_ECDH_EXCHANGE,
        certs_pb2.CERT_TYPE_CONTROLLER_INTERMEDIATE]
    assert signing.load_certificate(msg.certs[0].cert) == signer.cert
    assert signing.load_certificate(msg.certs[1].cert) == ecdh.cert
    for c in msg.certs:  # each keyed by its own hash (spec §2.1)
        assert c.hashAlgo == signing.SHA256_16BYTES and c.certHash == hashlib.sha256(c.cert).digest()[:16]
    assert len({c.certHash for c in msg.certs}) == 3
    assert pki.check_controller_certs(msg, ca.cert) == msg.certs[0].cert


def test_controller_ecdh_cert(ca: pki.Issued) -> None:
    ecdh = pki.create_controller_ecdh(ca)
    assert pki.is_issued_by(ecdh.cert, ca.cert) and isinstance(ecdh.key.curve, ec.SECP256R1)
    usage = ecdh.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_agreement and not usage.digital_signature


def _certs(*entries: tuple[int, bytes]) -> certs_pb2.ZControllerCert:
    return certs_pb2.ZControllerCert(certs=[certs_pb2.ZCert(type=t, cert=c) for t, c in entries])


def test_check_controller_certs_applies_eves_rules(ca: pki.Issued, signer: pki.Issued, other: pki.Issued) -> None:
    S, E, I = (certs_pb2.CERT_TYPE_CONTROLLER_SIGNING, certs_pb2.CERT_TYPE_CONTROLLER_ECDH_EXCHANGE,
               certs_pb2.CERT_TYPE_CONTROLLER_INTERMEDIATE)
    sig, ecdh = pki.cert_pem(signer.cert), pki.cert_pem(pki.create_controller_ecdh(ca).cert)
    assert pki.check_controller_certs(_certs((S, sig), (E, ecdh)), ca.cert) == sig
    stranger = pki.create_root_ca("stranger")
    bad = {
        "exactly one signing": _certs((E, ecdh)),
        "exactly one signing certificate is needed, got 2": _certs((S, sig), (S, pki.cert_pem(other.cert)), (E, ecdh)),
        "no ECDH": _certs((S, sig)),
        "not a controller type": _certs((S, sig), (E, ecdh), (certs_pb2.CERT_TYPE_DEVICE_ONBOARDING, sig)),
        "ECDH certificate does not chain": _certs((S, sig), (E, pki.cert_pem(pki.create_controller_ecdh(stranger).cert))),
        "signing certificate does not chain": _certs((S, pki.cert_pem(pki.create_controller_signing(stranger).cert)),
                                                     (E, ecdh)),
    }
    for reason, msg in bad.items():
        with pytest.raises(pki.ControllerCertsError, match=reason):
            pki.check_controller_certs(msg, ca.cert)
    assert pki.check_controller_certs(_certs((S, sig)), ca.cert, require_ecdh=False) == sig  # pre-16.12 rule
    # leaves issued by an intermediate verify only with it in the list
    mid_key = pki.new_key()
    mid = pki.Issued(pki._build(pki._name("mid"), mid_key, ca, days=30, ca=True,
                                key_usage=pki._key_usage(cert_sign=True)), mid_key)
    sig2, ecdh2 = pki.create_controller_signing(mid), pki.create_controller_ecdh(mid)
    chain = [(S, pki.cert_pem(sig2.cert)), (E, pki.cert_pem(ecdh2.cert))]
    assert pki.check_controller_certs(_certs(*chain, (I, pki.cert_pem(mid.cert))), ca.cert) == chain[0][1]
    with pytest.raises(pki.ControllerCertsError, match="does not chain"):
        pki.check_controller_certs(_certs(*chain), ca.cert)
    # validity at device time
    late = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=20000)
    with pytest.raises(pki.ControllerCertsError, match="does not chain"):
        pki.check_controller_certs(_certs((S, sig), (E, ecdh)), ca.cert, now=late)


def test_controller_hash_is_over_the_served_pem(signer: pki.Issued) -> None:
    """Controller -> device: senderCertHash = sha256 of the PEM bytes (spec §2.1), not of the DER."""
    pem = pki.cert_pem(signer.cert)
    for algo, length in ((signing.SHA256_32BYTES, 32), (signing.SHA256_16BYTES, 16)):
        box = signing.seal(b"p", signer.key, signer.cert, algo=algo, served_pem=pem)
        assert box.senderCertHash == hashlib.sha256(pem).digest()[:length]
        assert box.senderCertHash != signing.cert_hash(signer.cert, algo)
        assert signing.open_container(box, signing.pem_index([pem])) == b"p"
        with pytest.raises(signing.UnknownCertHash):  # a DER-keyed verifier misses it
            signing.open_container(box, signing.cert_index([signer.cert]))
    # byte for byte: the same cert served with another line ending is another name
    crlf = pem.replace(b"\n", b"\r\n")
    box = signing.seal(b"p", signer.key, signer.cert, served_pem=crlf)
    with pytest.raises(signing.UnknownCertHash):
        signing.open_container(box, signing.pem_index([pem]))
    assert signing.open_container(box, signing.pem_index([crlf])) == b"p"


def test_pem_save_and_load(tmp_path: Path, signer: pki.Issued) -> None:
    pki.save_pem(signer, tmp_path / "c" / "signing.pem", tmp_path / "c" / "signing.key")
    assert stat.S_IMODE((tmp_path / "c" / "signing.key").stat().st_mode) == 0o600
    loaded = pki.load_pem(tmp_path / "c" / "signing.pem", tmp_path / "c" / "signing.key")
    assert loaded.cert == signer.cert
    box = signing.seal(b"p", loaded.key, loaded.cert)
    assert signing.open_container(box, signing.cert_index([signer.cert])) == b"p"


# -- generated code is up to date --------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                    reason="grpcio-tools not installed (pip install -e '.[test]')")
def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-protos"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    fresh = tmp_path / "eden" / "wire" / "gen"
    committed = ROOT / "eden" / "wire" / "gen"

    def names(d: Path) -> set[str]:
        return {p.name for p in d.iterdir() if p.suffix in (".py", ".pyi")}

    assert names(fresh) == names(committed), "generated file set differs: run scripts/gen-protos"
    stale = [n for n in sorted(names(fresh)) if (fresh / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"stale generated files {stale}: run scripts/gen-protos and commit the result"
