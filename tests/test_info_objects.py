"""The per-object info kinds EVE sends beside device and app info (spec §2.2): volumes, content
trees, network instances and the hardware report. Their encoding against upstream's field
numbers, the agent's on-change sending, the controller's bound per kind, and an emulated device
with an app whose volume, content tree and hardware report reach the controller."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eden.agent.driver import AgentDriver, Outcome, PortUrls
from eden.agent.objects import ObjectReports, app_objects, hardware
from eden.agent.spec import AgentSpec
from eden.agent.state import StateDir
from eden.agent.transport import DeviceLink, Transport, image_map
from eden.controller.core import BadRequest, Controller
from eden.controller.layout import Layout
from eden.controller.limits import Limits
from eden.controller.setup import init
from eden.controller.testing import ServeProcess
from eden.wire import codec, objinfo
from eden.wire.gen import info_pb2
from eve.download import Download
from eve.enums import ZSwState

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"serial": "obj-1", "profile": "qemu-x86_64", "image": "base", "images": {"base": {"version": "13.4.0"}},
        "boot_time": 1.0}
VOLUME = {"kind": "ZI_VOLUME", "key": codec.app_volume_uuid("web"),
          "data": {"name": "web", "state": "CREATED_VOLUME", "progress": 100, "max_size": 5, "cur_size": 5, "err": ""}}
TREE = {"kind": "ZI_CONTENT_TREE", "key": codec.app_content_uuid("web"),
        "data": {"name": "web", "sha256": "ab" * 32, "state": "LOADED", "progress": 100, "size": 5, "err": ""}}
NETWORK = {"kind": "ZI_NETWORK_INSTANCE", "key": "2b1f7c39-8a5e-4d64-9d8a-0c5d4a1b2e3f",
           "data": {"name": "local", "version": "1", "activated": True, "ports": ["eth0"], "state": "ONLINE", "err": ""}}
HARDWARE = {"kind": "ZI_HARDWARE", "key": objinfo.HARDWARE_KEY, "data": {
    "release": "13.4.0", "platform": "qemu-x86_64", "partition": "IMGA", "memory": 4 << 30, "storage": 32 << 30,
    "cores": 4, "tpm": True, "firmware": "edk2-stable202311", "nics": [{"name": "eth0", "kind": "ethernet", "speed_mbps": 1000}]}}
REPORT = {"at": 1.7e9, "state": "ONLINE", "boot_reason": "FIRST", "apps": {}}


def _upstream_fields() -> dict[tuple[str, str], int]:
    rows = (line.split("\t") for line in (ROOT / "proto" / "eve-api-fields.tsv").read_text().splitlines())
    return {(r[1], r[2]): int(r[3]) for r in rows if r[0] == "field"}


# --------------------------------------------------------------------------------- encoding --
@pytest.mark.parametrize("obj", [VOLUME, TREE, NETWORK, HARDWARE], ids=lambda o: o["kind"])
def test_each_kind_is_its_own_message_numbered_as_upstream(obj: dict[str, Any]) -> None:
    payloads = codec.encode_request("info", {**REPORT, "objects": [obj]}, device_uuid="dev-uuid")
    assert len(payloads) == 2  # the device message, then the object's
    msg = info_pb2.ZInfoMsg.FromString(payloads[1])
    field = objinfo.CONTENT_FIELD[obj["kind"]]
    assert info_pb2.ZInfoTypes.Name(msg.ztype) == obj["kind"] and msg.WhichOneof("InfoContent") == field
    assert msg.devId == "dev-uuid" and msg.HasField("atTimeStamp")
    upstream = _upstream_fields()
    number = msg.DESCRIPTOR.fields_by_name[field].number
    assert number == upstream[("org.lfedge.eve.info.ZInfoMsg", field)]
    assert number == {"niinfo": 12, "vinfo": 13, "cinfo": 14, "hwinfo": 18}[field]
    content = getattr(msg, field)
    for f, _value in content.ListFields():  # every field eden sets has upstream's number
        assert f.number == upstream[(content.DESCRIPTOR.full_name, f.name)], f.name
    decoded = codec.decode_request("info", payloads[1])
    assert decoded == {"part": "object", "at": 1.7e9, "content_field": number, **obj}


def test_a_gone_object_is_its_uuid_alone() -> None:
    gone = {"kind": "ZI_VOLUME", "key": VOLUME["key"], "data": None}
    raw = codec.encode_request("info", {**REPORT, "objects": [gone]}, device_uuid="d")[1]
    msg = info_pb2.ZInfoMsg.FromString(raw)
    assert [f.name for f, _ in msg.vinfo.ListFields()] == ["uuid"]
    assert codec.decode_request("info", raw)["data"] is None


def test_decoded_texts_and_lists_are_cut() -> None:
    long = {**NETWORK, "data": {**NETWORK["data"], "name": "n" * 5000, "ports": [f"p{n}" for n in range(100)]}}
    raw = codec.encode_request("info", {**REPORT, "objects": [long]}, device_uuid="d")[1]
    data = codec.decode_request("info", raw)["data"]
    assert len(data["name"]) == objinfo.MAX_TEXT and len(data["ports"]) == objinfo.MAX_ITEMS


def test_a_kind_with_another_kinds_content_is_refused() -> None:
    msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_BLOB_LIST, devId="d", vinfo=info_pb2.ZInfoVolume(uuid="u"))
    msg.atTimeStamp.GetCurrentTime()
    with pytest.raises(codec.CodecError):
        codec.decode_request("info", msg.SerializeToString())
    with pytest.raises(codec.CodecError):
        codec.encode_request("info", {**REPORT, "objects": [{**VOLUME, "data": {**VOLUME["data"], "progress": 101}}]})


# ------------------------------------------------------------------------ agent: on change --
def _node(apps: dict[str, Any], downloads: dict[str, Download]) -> Any:
    zboot = SimpleNamespace(current="IMGA", current_partition=SimpleNamespace(version="13.4.0"))
    return SimpleNamespace(zedmanager=SimpleNamespace(apps=apps), downloader=SimpleNamespace(downloads=downloads), zboot=zboot)


def test_objects_follow_the_app_and_are_sent_again_only_when_they_change() -> None:
    dl = Download(size=1000)
    dl.start(0.0, 100.0, 0)
    apps = {"web": {"state": ZSwState.DOWNLOAD_STARTED, "err": "", "spec": {"size": 1000}, "stage": 1}}
    node = _node(apps, {"app/web": dl})
    made: list[int] = []
    reports = ObjectReports(lambda: (made.append(1), HARDWARE)[1])
    first = reports.pending(node, 5.0)
    assert [o["kind"] for o in first] == ["ZI_HARDWARE", "ZI_CONTENT_TREE", "ZI_VOLUME"]
    assert first[1]["data"]["state"] == "DOWNLOAD_STARTED" and first[1]["data"]["progress"] == 50
    assert reports.pending(node, 5.0) == first  # not acknowledged (a failed exchange): sent again
    reports.acknowledged(first)
    assert reports.pending(node, 5.0) == []  # nothing changed
    apps["web"]["state"] = ZSwState.CREATING_VOLUME
    dl.verified(True)
    changed = reports.pending(node, 9.0)
    assert [(o["kind"], o["data"]["state"]) for o in changed] == [("ZI_CONTENT_TREE", "LOADED"), ("ZI_VOLUME", "CREATING_VOLUME")]
    reports.acknowledged(changed)
    apps["web"]["state"] = ZSwState.RUNNING
    assert [o["data"]["state"] for o in reports.pending(node, 12.0)] == ["CREATED_VOLUME"]  # the tree is unchanged
    reports.acknowledged(reports.pending(node, 12.0))
    del apps["web"]
    gone = reports.pending(node, 20.0)
    assert gone == [{"kind": "ZI_CONTENT_TREE", "key": codec.app_content_uuid("web"), "data": None},
                    {"kind": "ZI_VOLUME", "key": codec.app_volume_uuid("web"), "data": None}]
    reports.acknowledged(gone)
    assert reports.pending(node, 21.0) == [] and made == [1]  # the hardware report: once per boot
    apps["web"] = {"state": ZSwState.BOOTING, "err": "", "spec": {"size": 1000}, "stage": 6}
    next_boot = ObjectReports(lambda: HARDWARE).pending(_node(apps, {}), 0.0)  # installed: straight to its volume
    assert [(o["kind"], o["data"].get("state")) for o in next_boot] == [
        ("ZI_HARDWARE", None), ("ZI_CONTENT_TREE", "LOADED"), ("ZI_VOLUME", "CREATED_VOLUME")]


def test_a_download_error_is_the_content_trees_and_the_volumes() -> None:
    dl = Download(size=1000)
    dl.start(0.0, -1.0, 0)  # no port passes the cost gate
    apps = {"web": {"state": ZSwState.DOWNLOAD_STARTED, "err": dl.err, "spec": {"size": 1000}, "stage": 1}}
    tree, vol = app_objects(_node(apps, {"app/web": dl}), 1.0)
    assert tree["data"]["err"] == vol["data"]["err"] == "No IP management port addresses with cost <= 0"
    memory = {"web": {"state": ZSwState.INSTALLED, "err": "not enough memory", "spec": {"size": 1000}, "stage": 5}}
    assert [o["data"]["err"] for o in app_objects(_node(memory, {}), 1.0)] == ["", ""]  # an app error, not theirs


def test_the_hardware_report_comes_from_the_profile() -> None:
    spec = AgentSpec.model_validate(SPEC)
    hw = hardware(spec.node_params(), _node({}, {}), 32 << 30)["data"]
    assert hw == {**HARDWARE["data"], "nics": [{"name": "eth0", "kind": "ethernet", "speed_mbps": 1000},
                                               {"name": "eth1", "kind": "ethernet", "speed_mbps": 1000}]}


# ----------------------------------------------------------------------- controller: bound --
def test_the_controller_keeps_a_bounded_number_of_objects_per_kind(tmp_path: Path) -> None:
    init(tmp_path / "c")
    ctl = Controller(Layout(tmp_path / "c"), limits=Limits(info_objects_per_kind=3))
    _, i = ctl.preregister("S1", config={})
    for n in range(5):
        ctl.keep_object(i, "ZI_VOLUME", f"v{n}", {"state": "CREATED_VOLUME"}, float(n))
    ctl.keep_object(i, "ZI_VOLUME", "v2", {"state": "ERROR"}, 9.0)  # an update moves it, drops nothing
    ctl.keep_object(i, "ZI_CONTENT_TREE", "t0", {"state": "LOADED"}, 1.0)  # another kind has its own bound
    ctl.commit([i], [])
    view = ctl.info_view(i, "ZI_VOLUME")
    assert list(view["kinds"]["ZI_VOLUME"]) == ["v3", "v4", "v2"] and view["dropped"] == 2
    ctl.keep_object(i, "ZI_VOLUME", "v3", None, 10.0)  # gone
    ctl.commit([i], [])
    ctl.close()
    again = Controller(Layout(tmp_path / "c"))
    kept = again.info_view(i)["kinds"]
    assert list(kept["ZI_VOLUME"]) == ["v4", "v2"] and kept["ZI_VOLUME"]["v2"]["data"] == {"state": "ERROR"}
    assert list(kept["ZI_CONTENT_TREE"]) == ["t0"]
    with pytest.raises(BadRequest):
        again.info_view(i, "ZI_NOP")
    again.close()
    assert Limits().info_objects_per_kind == 256


# ------------------------------------------------------------------------------- on the wire --
@pytest.mark.slow
def test_an_emulated_device_with_an_app_reports_its_volume_content_tree_and_hardware(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    app = {"kind": "container", "cpus": 1, "memory": 256 << 20}
    with ServeProcess(root) as server:
        admin = server.admin()
        admin.preregister("obj-1", config={"apps": {"web": app}})
        spec = AgentSpec.model_validate(SPEC)
        state = StateDir(tmp_path / "dev")
        state.init(spec)
        layout = server.layout
        state.write_controller_config(root_pem=layout.root_cert.read_bytes(),
                                      onboard_cert_pem=layout.cert("onboard").read_bytes(),
                                      onboard_key_pem=layout.key("onboard").read_bytes())
        cc = state.controller_config()

        def reported() -> dict[str, Any]:
            return admin.info("obj-1")["kinds"]

        async def scenario() -> Outcome:
            async with Transport(cc.root_pem) as tr:
                drv = AgentDriver(spec=spec, params=spec.node_params(), state=state, transport=tr,
                                  link=DeviceLink(device=state.device_identity(), onboard=cc.onboard,
                                                  images=image_map(list(spec.images))),
                                  urls=PortUrls(default=server.info["api_url"]), events=lambda *_: None)
                drv.start()
                deadline = time.monotonic() + 60
                while True:
                    kinds = await asyncio.to_thread(reported)
                    vol = kinds.get("ZI_VOLUME", {}).get(codec.app_volume_uuid("web"))
                    if vol is not None and vol["data"]["state"] == "CREATED_VOLUME" and kinds.get("ZI_APP", {}).get(
                            "web", {}).get("state") == "RUNNING":
                        break
                    assert time.monotonic() < deadline, f"no created volume reported: {kinds}"
                    await asyncio.sleep(0.2)
                drv.power_off()
                return await drv.wait()

        assert asyncio.run(asyncio.wait_for(scenario(), 90)) == Outcome("off")
        kinds = reported()
        tree = kinds["ZI_CONTENT_TREE"][codec.app_content_uuid("web")]["data"]
        assert tree["state"] == "LOADED" and tree["name"] == "web" and tree["progress"] == 100
        hw = kinds["ZI_HARDWARE"][objinfo.HARDWARE_KEY]["data"]
        assert hw["release"] == "13.4.0" and hw["partition"] == "IMGA" and hw["platform"] == "qemu-x86_64"
        assert "ZI_NETWORK_INSTANCE" not in kinds  # eden's model has no network instances
        device = admin.device("obj-1")
        assert device["reports"]["ZI_HARDWARE"]["count"] == 1  # once per boot
        assert device["reports"]["ZI_VOLUME"]["count"] >= 3  # each state change, not each info cycle
        cli = subprocess.run([sys.executable, "-m", "eden", "controller", "info", "--dir", str(root), "obj-1",
                              "--kind", "ZI_VOLUME"], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert set(json.loads(cli.stdout)["kinds"]) == {"ZI_VOLUME"}


def test_a_deleted_network_instance_as_eve_sends_it_is_gone() -> None:
    # EVE's delete keeps networkVersion beside networkID and sets nothing else
    # (prepareAndPublishNetworkInstanceInfoMsg, P:cmd/zedagent/handlenetworkinstance.go; spec §2.2)
    msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_NETWORK_INSTANCE, devId="d",
                            niinfo=info_pb2.ZInfoNetworkInstance(networkID="n1", networkVersion="3"))
    msg.atTimeStamp.FromSeconds(1_700_000_000)
    decoded = codec.decode_request("info", msg.SerializeToString())
    assert decoded["key"] == "n1" and decoded["data"] is None
    msg.niinfo.displayname = "still here"
    assert codec.decode_request("info", msg.SerializeToString())["data"] is not None
