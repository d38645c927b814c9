"""Everything the controller acknowledged survives `kill -9` and a restart on the same DIR."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from eden.controller.client import AdminError

from eden.controller.setup import init
from eden.controller.testing import DeviceClient, ServeProcess, controller_signing_cert
from eden.wire import codec, pki
from eden.wire.gen import config_pb2, info_pb2
from eve.measured_boot import expected_pcrs


def _attest(dev: DeviceClient, signer: object, pcrs: dict[int, bytes]) -> dict:
    _s, body = dev.send("attest", {"type": "NONCE"})
    nonce = codec.decode_response("attest", 201, dev.open_reply(body, signer))["nonce"]
    quote = dev.tpm_quote(nonce, pcrs)
    _s, body = dev.send("attest", quote)
    return codec.decode_response("attest", 201, dev.open_reply(body, signer))


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    first = ServeProcess(root).start()
    assert set(first.info) >= {"pid", "api_url", "api_port", "admin_url", "admin_port", "root_certificate", "token_file"}
    assert first.info["api_url"] == f"https://127.0.0.1:{first.info['api_port']}" and first.info["api_port"] > 0
    try:
        admin = first.admin()
        admin.preregister("S1", firmware="fw", images={"eve": {"version": "1.0", "measurement": "m"}}, config={"items": {"timer.config.interval": 7}})
        admin.preregister("S2")
        admin.set_items({"debug.enable.ssh": True})  # global
        device = pki.create_device("S1")
        dev = DeviceClient(root, first.info["api_port"], "S1", device=device)
        signer = controller_signing_cert(dev)
        assert dev.register() == 201
        uuid = dev.fetch_uuid(signer)
        admin.set_baseos("S1", "eve-2", "2.0", True)
        admin.retry_update("S1")
        admin.shutdown("S1")
        admin.set_app("S1", "web", {"memory": 1 << 20, "cpus": 1, "kind": "container"})
        good = _attest(dev, signer, expected_pcrs(firmware="fw", rootfs="m", grub_cfg="grub.cfg:IMGA", config="config:S1"))
        assert good["code"] == "SUCCESS"
        assert dev.send("attest", {"type": "STORE_KEYS", "token": good["token"], "key": "vk"})[0] == 201
        assert _attest(dev, signer, expected_pcrs(firmware="fw", rootfs="other", grub_cfg="grub.cfg:IMGA", config="config:S1"))["code"] == "QUOTE_FAILED"
        # the failed quote revoked the token; attest again so the config can be read
        good = _attest(dev, signer, expected_pcrs(firmware="fw", rootfs="m", grub_cfg="grub.cfg:IMGA", config="config:S1"))
        msg = info_pb2.ZInfoMsg(ztype=info_pb2.ZI_DEVICE, devId=uuid)
        msg.atTimeStamp.seconds = 50
        msg.dinfo.restartCounter = 9
        assert dev.post("info", msg.SerializeToString())[0] == 201
        status, body = dev.post("config", config_pb2.ConfigRequest(integrity_token=good["token"].encode()).SerializeToString())
        assert status == 200
        served_hash = config_pb2.ConfigResponse.FromString(dev.open_reply(body, signer)).configHash
        before = admin.device("S1")
        events_before = admin.events()
        templates_before = admin.templates()
        dev.close()
    finally:
        first.stop(signal.SIGKILL)
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL

    with ServeProcess(root) as second:
        admin = second.admin()
        after = admin.device("S1")
        for view in (before, after):
            view.pop("last_seen")
        assert after == before
        assert admin.device("S2")["has_config"]  # global items set -> config exists
        assert admin.events()[: len(events_before)] == events_before
        assert admin.templates() == templates_before
        dev = DeviceClient(root, second.info["api_port"], "S1", device=device)
        try:
            assert dev.register() == 200  # same cert is still known
            assert dev.fetch_uuid(signer) == uuid
            req = config_pb2.ConfigRequest(configHash=served_hash, integrity_token=good["token"].encode())
            assert dev.post("config", req.SerializeToString())[0] == 304  # same hash, token still valid
            again = _attest(dev, signer, expected_pcrs(firmware="fw", rootfs="m", grub_cfg="grub.cfg:IMGA", config="config:S1"))
            assert again["key"] == "vk"
        finally:
            dev.close()
    assert second.proc is not None and second.proc.returncode == 0  # SIGTERM: clean shutdown
    assert not second.layout.serve_json.exists()
    ready = [line for line in (root / "serve.log").read_text().splitlines() if line.startswith("eden controller ready")]
    assert len(ready) == 2 and f"pid={second.proc.pid}" in ready[1]


def _hold_db_lock(root: Path) -> sqlite3.Connection:
    """Another process's write transaction on the controller's database (as a backup tool would)."""
    db = sqlite3.connect(str(root / "controller.db"), isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    return db


def test_a_failed_commit_is_neither_served_nor_answered_as_done(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    device = pki.create_device("LOCK-1")
    first = ServeProcess(root).start()
    try:
        admin = first.admin()
        admin.preregister("LOCK-1", config={"items": {"a": 1}})
        lock = _hold_db_lock(root)
        t0 = time.monotonic()
        with pytest.raises(AdminError) as exc:
            admin.set_items({"b": 2}, "LOCK-1")
        assert exc.value.status == 503 and time.monotonic() - t0 < 3  # a bounded wait, then "retry"
        dev = DeviceClient(root, first.info["api_port"], "LOCK-1", device=device)
        assert dev.register() == 503  # EVE retries 503
        lock.rollback()
        lock.close()
        assert "b" not in admin.device("LOCK-1")["items"]  # the refused change is not served
        assert admin.device("LOCK-1")["registered"] is False
        assert dev.register() == 201  # the retry is a first registration, not a 200 "repeat"
        dev.close()
    finally:
        first.stop(signal.SIGKILL)
    with ServeProcess(root) as second:
        view = second.admin().device("LOCK-1")
        assert view["registered"] is True and view["items"] == {"a": 1}
        dev = DeviceClient(root, second.info["api_port"], "LOCK-1", device=device)
        try:
            assert dev.register() == 200
        finally:
            dev.close()
    assert "Traceback" not in (root / "serve.log").read_text()


def test_partial_uploads_left_by_a_killed_controller_are_removed_at_start(tmp_path: Path) -> None:
    root = tmp_path / "c"
    init(root)
    content = root / "content"
    content.mkdir()
    stale = [content / ".upload.123.456", content / ".incoming.123.789"]
    for p in stale:
        p.write_bytes(b"half an image")
    kept = content / ("ab" * 32)
    kept.write_bytes(b"a stored image")
    with ServeProcess(root):
        assert not any(p.exists() for p in stale)
        assert kept.exists()
    assert "removed a partial upload" in (root / "serve.log").read_text()


def test_a_failed_commit_puts_created_devices_and_global_state_back(tmp_path: Path) -> None:
    from eden.controller.core import Controller
    from eden.controller.layout import Layout

    root = tmp_path / "c"
    init(root)
    ctl = Controller(Layout(root))
    try:
        ctl.preregister("KEEP", config={"items": {"a": 1}})
        ctl.admin_change("items", None, {"items": {"g": 1}})
        version = ctl.model.devices[0].ver
        lock = _hold_db_lock(root)
        for change in (lambda: ctl.preregister("NEW"),
                       lambda: ctl.preregister_many([{"serial": "KEEP", "firmware": "x"}, {"serial": "NEW2"}]),
                       lambda: ctl.admin_change("items", None, {"items": {"g": 2}}),
                       lambda: ctl.admin_change("items", ["KEEP"], {"items": {"a": 2}}),
                       lambda: ctl.set_learn(True)):
            with pytest.raises(sqlite3.OperationalError):
                change()
        lock.rollback()
        lock.close()
        assert sorted(ctl.by_serial) == ["KEEP"] and len(ctl.model.devices) == 1
        assert ctl.model.global_items == {"g": 1} and ctl.learn is False
        dev = ctl.model.devices[0]
        assert dev.items == {"a": 1} and dev.firmware == "" and dev.ver == version
        ctl.preregister("NEW")  # and the controller goes on from there
        assert sorted(ctl.by_serial) == ["KEEP", "NEW"]
    finally:
        ctl.close()


def test_a_long_held_lock_does_not_stall_the_controller(tmp_path: Path) -> None:
    from eden.controller.core import Controller
    from eden.controller.layout import Layout

    root = tmp_path / "c"
    init(root)
    ctl = Controller(Layout(root))  # busy_ms 250 (Limits.db_busy_ms)
    try:
        ctl.preregister("S")
        lock = _hold_db_lock(root)
        t0 = time.monotonic()
        for _ in range(20):
            with pytest.raises(sqlite3.OperationalError):
                ctl.admin_change("reboot", ["S"], {})
        spent = time.monotonic() - t0
        assert spent < 1.5, spent  # one 250 ms wait, then immediate refusals (20 waits would be 5 s)
        lock.rollback()
        lock.close()
        ctl.admin_change("reboot", ["S"], {})  # the lock is free: writes go through at once
        assert ctl.model.devices[0].reboot
    finally:
        ctl.close()
