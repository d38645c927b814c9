"""eden's proto/ against upstream lf-edge/eve-api (spec §2).

``proto/eve-api-fields.tsv`` is extracted from eve-api by ``scripts/eve-api-table``; every
message and enum eden defines must match it by full name, field number, type, label and
presence (a plain proto3 scalar upstream must not be ``optional`` here: EVE's 0 is absent
on the wire), and no eden field may use a number upstream reserved.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor as _d

from eden.wire.gen import (attest_pb2, auth_pb2, certs_pb2, common_pb2, config_pb2, info_pb2,
                           metrics_pb2, register_pb2, uuid_pb2)

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "proto" / "eve-api-fields.tsv"
MODULES = (attest_pb2, auth_pb2, certs_pb2, common_pb2, config_pb2, info_pb2, metrics_pb2,
           register_pb2, uuid_pb2)
F = _d.FieldDescriptor
_TYPE = {getattr(F, n): n[len("TYPE_"):].lower() for n in dir(F) if n.startswith("TYPE_")}


def load_table() -> tuple[dict, dict, dict]:
    fields: dict[tuple[str, int], tuple[str, ...]] = {}
    enums: dict[tuple[str, int], str] = {}
    reserved: dict[str, set[int]] = {}
    for line in TABLE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, name, *rest = line.split("\t")
        if kind == "field":
            fname, number, ftype, label, presence = rest
            fields[(name, int(number))] = (fname, ftype, label, presence)
        elif kind == "enum":
            enums[(name, int(rest[1]))] = rest[0]
        elif kind == "reserved":
            reserved.setdefault(name, set()).add(int(rest[1]))
        else:
            raise AssertionError(f"{TABLE.name}: unknown row kind {kind!r}")
    return fields, enums, reserved


def eden_descriptors() -> tuple[list[_d.Descriptor], list[_d.EnumDescriptor]]:
    messages: list[_d.Descriptor] = []
    enums: list[_d.EnumDescriptor] = []

    def add(m: _d.Descriptor) -> None:
        messages.append(m)
        enums.extend(m.enum_types)
        for n in m.nested_types:
            add(n)

    for mod in MODULES:
        for m in mod.DESCRIPTOR.message_types_by_name.values():
            add(m)
        enums.extend(mod.DESCRIPTOR.enum_types_by_name.values())
    return messages, enums


def describe(f: _d.FieldDescriptor) -> tuple[str, str, str, str]:
    ftype = (f.message_type or f.enum_type).full_name if f.type in (F.TYPE_MESSAGE, F.TYPE_ENUM) else _TYPE[f.type]
    label = "repeated" if f.is_repeated else "required" if f.is_required else "optional"
    if label == "repeated" or f.type == F.TYPE_MESSAGE:
        presence = "-"
    else:
        presence = "explicit" if f.containing_oneof is not None else "implicit"
    return f.name, ftype, label, presence


# Values EVE sends that upstream's proto does not name (spec §2.2: last_boot_reason 15, 16).
EDEN_ONLY_ENUM_VALUES = {("org.lfedge.eve.info.BootReason", 15), ("org.lfedge.eve.info.BootReason", 16)}
FIELDS, ENUMS, RESERVED = load_table()
MESSAGES, ENUM_DESCS = eden_descriptors()


def test_table_is_extracted_not_empty() -> None:
    assert len(FIELDS) > 200 and len(ENUMS) > 100
    assert FIELDS[("org.lfedge.eve.auth.AuthContainer", 3)][:2] == ("senderCertHash", "bytes")


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.full_name)
def test_message_matches_upstream(msg: _d.Descriptor) -> None:
    known = {n for (name, n) in FIELDS if name == msg.full_name}
    assert known or msg.full_name in RESERVED or not msg.fields, (
        f"{msg.full_name} is not in {TABLE.name}: not an upstream message, or regenerate the table with "
        "scripts/eve-api-table")
    bad = []
    for f in msg.fields:
        up = FIELDS.get((msg.full_name, f.number))
        if f.number in RESERVED.get(msg.full_name, ()):
            bad.append(f"{f.name}={f.number}: reserved upstream")
        elif up is None:
            bad.append(f"{f.name}={f.number}: no such field upstream")
        elif describe(f) != up:
            bad.append(f"{f.name}={f.number}: eden {describe(f)} != upstream {up}")
    assert not bad, f"{msg.full_name}: " + "; ".join(bad)


@pytest.mark.parametrize("enum", ENUM_DESCS, ids=lambda e: e.full_name)
def test_enum_numbers_exist_upstream(enum: _d.EnumDescriptor) -> None:
    bad = [f"{v.name}={v.number}" for v in enum.values 
           if (enum.full_name, v.number) not in ENUMS and (enum.full_name, v.number) not in EDEN_ONLY_ENUM_VALUES]
    assert not bad, f"{enum.full_name}: values not upstream: {bad}"


def test_the_check_catches_a_drift() -> None:
    """The comparison itself can fail: a renumbered or re-typed field is reported."""
    key = ("org.lfedge.eve.attest.AttestVolumeKey", 4)
    assert FIELDS[key][:2] == ("has_policy_pcr_list", "bool")
    assert 3 in RESERVED["org.lfedge.eve.attest.AttestVolumeKey"]
    dev_sw = info_pb2.ZInfoDevice.DESCRIPTOR.fields_by_name["rebootConfigCounter"]
    assert describe(dev_sw) == FIELDS[("org.lfedge.eve.info.ZInfoDevice", 33)]
    assert describe(dev_sw) != ("rebootConfigCounter", "uint32", "optional", "explicit")


def test_the_extraction_script_reads_an_eve_api_tree(tmp_path: Path) -> None:
    """scripts/eve-api-table on a tree laid out like eve-api's (validate rules included)."""
    (tmp_path / "proto" / "uuid").mkdir(parents=True)
    (tmp_path / "proto" / "uuid" / "uuid.proto").write_text(
        'syntax = "proto3";\nimport "validate/validate.proto";\npackage org.lfedge.eve.uuid;\n'
        "message UuidResponse {\n  string uuid = 1 [(validate.rules).string = {max_len: 256}];\n"
        "  string manufacturer = 2;\n  reserved 3;\n  optional uint32 extra = 4;\n}\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "eve-api-table"), str(tmp_path), "--rev", "r1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "# upstream revision: r1; regenerate with scripts/eve-api-table" in lines
    assert "field\torg.lfedge.eve.uuid.UuidResponse\tuuid\t1\tstring\toptional\timplicit" in lines
    assert "field\torg.lfedge.eve.uuid.UuidResponse\textra\t4\tuint32\toptional\texplicit" in lines
    assert "reserved\torg.lfedge.eve.uuid.UuidResponse\t-\t3" in lines
    assert not any("UuidRequest" in line for line in lines)  # only what eden defines and upstream has
