"""Base OS content served by the controller, the agent's download, and TOFU PCR templates (spec §3, §5).

Everything runs against a real `eden controller serve` subprocess over real TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import urllib.request
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from eden.agent.transport import ContentMismatch, ContentNotFound, Transport
from eden.controller.client import AdminClient, AdminError
from eden.controller.setup import init
from eden.controller.testing import DeviceClient, ServeProcess, controller_signing_cert
from eden.wire import codec, pki
from eden.wire.gen import config_pb2
from eve.measured_boot import QUOTE_PCRS

SIZE = 3 * 2**20 + 12345  # not a multiple of any chunk size


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("ctl") / "c"
    init(root)
    # content by path only from the test's own temp tree (docs/security.md)
    with ServeProcess(root, args=("--content-from", str(tmp_path_factory.getbasetemp()))) as proc:
        yield proc


@pytest.fixture()
def admin(server: ServeProcess) -> AdminClient:
    return server.admin()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("img") / "rootfs-2.0.img"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


_n = 0


def _serial() -> str:
    global _n
    _n += 1
    return f"CT-{_n:04d}"


def _base(server: ServeProcess) -> str:
    return server.info["api_url"]


def _root_pem(server: ServeProcess) -> bytes:
    return server.layout.root_cert.read_bytes()


def _download(server: ServeProcess, bases: list[str], path: str, dest: Path, sha: str, size: int | None,
              timeout: float = 30.0) -> Path:
    async def run() -> Path:
        async with Transport(_root_pem(server)) as t:
            return await t.download(bases, path, dest, sha, size, timeout)

    return asyncio.run(run())


def _onboarded_with_baseos(server: ServeProcess, admin: AdminClient, version: str) -> tuple[DeviceClient, x509.Certificate]:
    """A device configured for base OS ``ref-os`` at ``version``, onboarded: (client, controller signing cert)."""
    dev = DeviceClient(server.layout.root, server.info["api_port"], _serial())
    try:
        admin.preregister(dev.serial, config={"baseos": {"image": "ref-os", "version": version}})
        signer = controller_signing_cert(dev)
        dev.onboard_fully(signer)
    except BaseException:
        dev.close()
        raise
    return dev, signer


def _get(server: ServeProcess, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cafile=str(server.layout.root_cert))
    req = urllib.request.Request(_base(server) + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# ------------------------------------------------------------------------------- codec --
def test_codec_carries_content_as_content_tree_and_datastore() -> None:
    sha = "ab" * 32
    cfg = {"items": {}, "baseos": {"image": "ref-os", "version": "2.0", "activate": True, "retry": 1,
                                  "content": {"sha256": sha, "size": 4096, "url": f"/eden/datastore/sha256/{sha}"}},
           "reboot": 0, "apps": {}, "maintenance": False, "hash": "h1"}
    payload = codec.encode_response("config", 200, {"config": cfg, "ver": 4}, device_uuid="dev",
                                    datastore_fqdn="https://ctl:8443")
    assert codec.decode_response("config", 200, payload, images=codec.image_names(["ref-os"])) == {"config": cfg, "ver": 4}
    msg = config_pb2.ConfigResponse.FromString(payload).config
    (tree,) = msg.contentInfo
    (store,) = msg.datastores
    assert tree.uuid == msg.baseos.content_tree_uuid == codec.image_uuid("ref-os")
    assert (tree.sha256, tree.maxSizeBytes, tree.URL, tree.displayName) == (sha, 4096, sha, "ref-os")
    assert tree.dsId == store.id and store.dType == config_pb2.DsHttps
    assert (store.fqdn, store.dpath) == ("https://ctl:8443", "eden/datastore/sha256")
    # EdgeDevConfig field numbers as in eve-api devconfig.proto: datastores=6, contentInfo=20
    assert config_pb2.EdgeDevConfig.DESCRIPTOR.fields_by_name["datastores"].number == 6
    assert config_pb2.EdgeDevConfig.DESCRIPTOR.fields_by_name["contentInfo"].number == 20
    # without content nothing extra is sent, and the decoded baseos has no content key
    plain = {**cfg, "baseos": {k: v for k, v in cfg["baseos"].items() if k != "content"}}
    payload = codec.encode_response("config", 200, {"config": plain, "ver": 4})
    assert not config_pb2.ConfigResponse.FromString(payload).config.contentInfo
    assert "content" not in codec.decode_response("config", 200, payload)["config"]["baseos"]


@pytest.mark.parametrize("content", [
    {"sha256": "xyz", "size": 1, "url": "/a/b"},
    {"sha256": "ab" * 32, "size": -1, "url": "/a/b"},
    {"sha256": "ab" * 32, "size": 1, "url": "relative/b"},
    {"sha256": "ab" * 32, "size": 1, "url": "/a/"},
    "not a mapping",
])
def test_codec_rejects_bad_content(content: Any) -> None:
    cfg = {"baseos": {"image": "i", "version": "1", "content": content}}
    with pytest.raises(codec.CodecError):
        codec.encode_response("config", 200, {"config": cfg})


def test_codec_rejects_a_content_tree_without_its_datastore() -> None:
    resp = config_pb2.ConfigResponse(configHash="h")
    resp.config.baseos.content_tree_uuid = "t1"
    resp.config.baseos.base_os_version = "1"
    resp.config.contentInfo.add(uuid="t1", dsId="missing", URL="x", sha256="ab" * 32, maxSizeBytes=1)
    with pytest.raises(codec.CodecError, match="datastore"):
        codec.decode_response("config", 200, resp.SerializeToString())


# ----------------------------------------------------------------------------- content --
def test_content_is_stored_listed_and_put_into_the_device_config(server: ServeProcess, admin: AdminClient,
                                                                  image: tuple[Path, str]) -> None:
    path, sha = image
    dev, signer = _onboarded_with_baseos(server, admin, "2.0")
    try:

        def config() -> dict[str, Any]:
            status, body = dev.send("config", {"hash": "", "token": None})
            assert status == 200
            return codec.decode_response("config", 200, dev.open_reply(body, signer), images=codec.image_names(["ref-os"]))["config"]

        first = config()
        assert "content" not in first["baseos"]
        since = admin.events()[-1]["id"]
        row = admin.add_content("ref-os", path, "2.0", pcr13="11" * 32)
        assert (row["name"], row["version"], row["sha256"], row["size"]) == ("ref-os", "2.0", sha, SIZE)
        assert row["url"] == f"/eden/datastore/sha256/{sha}" and row["pcr13"] == "11" * 32
        stored = server.layout.content_dir / sha
        assert stored.read_bytes() == path.read_bytes()
        assert any(r["sha256"] == sha for r in admin.content())
        assert admin.wait_event("content_added", since=since, timeout=10)["data"]["sha256"] == sha
        second = config()
        assert second["hash"] != first["hash"]  # the device sees a new config
        assert second["baseos"] == {**first["baseos"], "content": {"sha256": sha, "size": SIZE, "url": row["url"]}}
        # another version of the image is not this content
        admin.set_baseos(dev.serial, "ref-os", "3.0")
        assert "content" not in config()["baseos"]
    finally:
        dev.close()


def test_add_content_rejects_bad_input(admin: AdminClient, tmp_path: Path, image: tuple[Path, str]) -> None:
    with pytest.raises(AdminError) as exc:
        admin.add_content("x", tmp_path / "missing.img")
    assert exc.value.status == 400
    with pytest.raises(AdminError) as exc:
        admin.add_content("x", image[0], pcr13="not-hex")
    assert exc.value.status == 400 and "pcr13" in str(exc.value)
    with pytest.raises(AdminError) as exc:
        admin.add_content("", image[0])
    assert exc.value.status == 400


def test_upload_gives_the_same_content(admin: AdminClient, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    src = tmp_path / "up.img"
    src.write_bytes(data)
    row = admin.add_content("uploaded-os", src, "1.0", upload=True)
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size"] == len(data)


def test_datastore_serves_ranges_and_404s(server: ServeProcess, admin: AdminClient, image: tuple[Path, str]) -> None:
    path, sha = image
    admin.add_content("ref-os", path, "2.0")
    data = path.read_bytes()
    status, headers, body = _get(server, f"/eden/datastore/sha256/{sha}")
    assert status == 200 and int(headers["Content-Length"]) == SIZE and body == data
    status, headers, body = _get(server, f"/eden/datastore/sha256/{sha}", {"Range": "bytes=1000-"})
    assert status == 206 and body == data[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{SIZE - 1}/{SIZE}" and int(headers["Content-Length"]) == SIZE - 1000
    assert _get(server, f"/eden/datastore/sha256/{'0' * 64}")[0] == 404
    assert _get(server, "/eden/datastore/sha256/not-a-hash")[0] == 404
    assert _get(server, "/eden/datastore/sha256/..%2Fcontroller.db")[0] == 404


# ---------------------------------------------------------------------------- download --
def test_download_verifies_and_renames(server: ServeProcess, admin: AdminClient, image: tuple[Path, str], tmp_path: Path) -> None:
    path, sha = image
    row = admin.add_content("ref-os", path, "2.0")
    dest = tmp_path / "slot.img"
    dead = "https://127.0.0.1:1"  # refused first: the next base URL is tried
    assert _download(server, [dead, _base(server)], row["url"], dest, sha, SIZE) == dest
    assert dest.read_bytes() == path.read_bytes()
    assert not dest.with_name("slot.img.part").exists()


def test_download_resumes_a_part_left_by_an_earlier_attempt(server: ServeProcess, admin: AdminClient,
                                                             image: tuple[Path, str], tmp_path: Path) -> None:
    path, sha = image
    row = admin.add_content("ref-os", path, "2.0")
    dest = tmp_path / "slot.img"
    dest.with_name("slot.img.part").write_bytes(path.read_bytes()[:777_777])
    _download(server, [_base(server)], row["url"], dest, sha, SIZE)
    assert dest.read_bytes() == path.read_bytes()


class CuttingProxy:
    """TCP relay to the controller that aborts its first connection after ``cut`` response bytes."""

    def __init__(self, port: int, cut: int) -> None:
        self.port, self.cut = port, cut
        self.down: list[int] = []  # response bytes relayed per connection

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = len(self.down)
        self.down.append(0)
        ur, uw = await asyncio.open_connection("127.0.0.1", self.port)

        async def up() -> None:
            while data := await reader.read(65536):
                uw.write(data)
                await uw.drain()

        async def down() -> None:
            while data := await ur.read(65536):
                if n == 0 and self.down[n] + len(data) > self.cut:
                    writer.transport.abort()  # a cut link: no TLS close, no FIN handshake
                    return
                self.down[n] += len(data)
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            uw.close()
            writer.close()


def test_download_resumes_with_range_after_a_cut_connection(server: ServeProcess, admin: AdminClient,
                                                             image: tuple[Path, str], tmp_path: Path) -> None:
    path, sha = image
    row = admin.add_content("ref-os", path, "2.0")
    dest = tmp_path / "slot.img"

    async def run() -> list[int]:
        proxy = CuttingProxy(server.info["api_port"], cut=SIZE // 2)
        port = await proxy.start()
        try:
            async with Transport(_root_pem(server)) as t:
                await t.download([f"https://127.0.0.1:{port}"], row["url"], dest, sha, SIZE, 30.0)
        finally:
            await proxy.close()
        return proxy.down

    down = asyncio.run(run())
    assert dest.read_bytes() == path.read_bytes()
    assert len(down) == 2 and SIZE // 3 < down[0] <= SIZE // 2
    # the second connection carried only the rest (a Range request), not the whole file again
    assert down[1] < SIZE - down[0] + 64 * 1024


def test_download_sha_mismatch_and_unknown_content(server: ServeProcess, admin: AdminClient,
                                                   image: tuple[Path, str], tmp_path: Path) -> None:
    path, sha = image
    row = admin.add_content("ref-os", path, "2.0")
    dest = tmp_path / "slot.img"
    with pytest.raises(ContentMismatch, match="sha256"):
        _download(server, [_base(server)], row["url"], dest, "00" * 32, SIZE)
    assert not dest.exists() and not dest.with_name("slot.img.part").exists()
    with pytest.raises(ContentMismatch, match="more than"):
        _download(server, [_base(server)], row["url"], dest, sha, SIZE - 1)
    assert not dest.exists() and not dest.with_name("slot.img.part").exists()
    with pytest.raises(ContentNotFound):
        _download(server, [_base(server)], f"/eden/datastore/sha256/{'0' * 64}", dest, "0" * 64, 10)
    assert not dest.exists()


# ------------------------------------------------------------------------ TOFU templates --
def _tpm(pcr13: str, *, fw: bytes = b"\x01") -> dict[int, bytes]:
    """PCR values as a real TPM would quote them: firmware ones nobody declared."""
    pcrs = {i: hashlib.sha256(fw + bytes([i])).digest() for i in QUOTE_PCRS}
    pcrs[13] = bytes.fromhex(pcr13)
    return pcrs


def _quote(dev: DeviceClient, pcrs: dict[int, bytes]) -> dict[str, Any]:
    signer = pki.load_cert(dev.layout.cert("signing"))
    status, body = dev.send("attest", {"type": "NONCE"})
    assert status == 201
    nonce = codec.decode_response("attest", 201, dev.open_reply(body, signer))["nonce"]
    status, body = dev.send("attest", dev.tpm_quote(nonce, pcrs))
    assert status == 201
    return codec.decode_response("attest", 201, dev.open_reply(body, signer))


def _last_result(admin: AdminClient, serial: str) -> dict[str, Any]:
    return admin.device(serial)["attestation"]["results"][-1]


A, B, UNKNOWN = "a1" * 32, "b2" * 32, "ee" * 32


def test_tofu_learns_firmware_pcrs_once_and_accepts_declared_releases(server: ServeProcess, admin: AdminClient,
                                                                       image: tuple[Path, str]) -> None:
    admin.add_content("tofu-os", image[0], "2.0", pcr13=B)  # the release the device may update to
    dev = DeviceClient(server.layout.root, server.info["api_port"], _serial())
    try:
        admin.preregister(dev.serial, images={"tofu-os": {"version": "1.0", "measurement": "m", "pcr13": A}},
                          config={}, tofu=True)
        dev.onboard_fully(controller_signing_cert(dev))
        since = admin.events()[-1]["id"]
        # not a declared release: nothing is learned
        assert _quote(dev, _tpm(UNKNOWN))["code"] == "QUOTE_FAILED"
        assert admin.wait_event("tofu_refused", dev.serial, since=since, timeout=10)["data"]["pcr13"] == UNKNOWN
        assert admin.device(dev.serial)["firmware_pcrs_learned"] is False
        # first quote with a declared PCR 13: learned and approved
        assert _quote(dev, _tpm(A))["code"] == "SUCCESS"
        learned = admin.wait_event("template_learned", dev.serial, since=since, timeout=10)
        assert learned["data"]["mode"] == "tofu" and learned["data"]["pcr13"] == A
        assert admin.device(dev.serial)["firmware_pcrs_learned"] is True
        assert _quote(dev, _tpm(A))["code"] == "SUCCESS"  # the same quote again
        # a changed firmware PCR fails, and says which PCR
        changed = _tpm(A)
        changed[0] = b"\x00" * 32
        assert _quote(dev, changed)["code"] == "QUOTE_FAILED"
        assert _last_result(admin, dev.serial)["mismatch"] == [0]
        # other firmware altogether is not re-learned
        assert _quote(dev, _tpm(A, fw=b"\x02"))["code"] == "QUOTE_FAILED"
        # the registered release (content pcr13) passes with the learned firmware PCRs
        assert _quote(dev, _tpm(B))["code"] == "SUCCESS"
        # a rootfs that is no declared release fails on PCR 13 only
        assert _quote(dev, _tpm(UNKNOWN))["code"] == "QUOTE_FAILED"
        assert _last_result(admin, dev.serial)["mismatch"] == [13]
        # an admin reset trusts the next first quote again
        admin.reset_device_tofu(dev.serial)
        assert _quote(dev, _tpm(A, fw=b"\x02"))["code"] == "SUCCESS"
        assert _quote(dev, _tpm(A))["code"] == "QUOTE_FAILED"
    finally:
        dev.close()


def test_declared_image_templates_still_work_for_devices_without_tofu(server: ServeProcess, admin: AdminClient) -> None:
    from eve.measured_boot import expected_pcrs

    dev = DeviceClient(server.layout.root, server.info["api_port"], _serial())
    try:
        admin.preregister(dev.serial, firmware="fw-1", images={"eve-1": {"version": "1.0", "measurement": "m-1"}}, config={})
        dev.onboard_fully(controller_signing_cert(dev))
        good = expected_pcrs(firmware="fw-1", rootfs="m-1", grub_cfg="grub.cfg:IMGB", config=f"config:{dev.serial}")
        assert _quote(dev, good)["code"] == "SUCCESS"
        assert _quote(dev, _tpm(A))["code"] == "QUOTE_FAILED"
    finally:
        dev.close()


def test_controller_wide_tofu_survives_a_restart(tmp_path: Path, image: tuple[Path, str]) -> None:
    root = tmp_path / "c"
    init(root, tofu=True)
    serial = "TOFU-RESTART"
    device = pki.create_device("device restart")
    with ServeProcess(root) as proc:
        admin = proc.admin()
        assert admin.request("GET", "/v1/settings")["tofu"] is True
        admin.add_content("os", image[0], "1.0", pcr13=A, upload=True)
        admin.preregister(serial, config={"baseos": {"image": "os", "version": "1.0"}})
        dev = DeviceClient(root, proc.info["api_port"], serial, device=device)
        try:
            dev.onboard_fully(controller_signing_cert(dev))
            assert _quote(dev, _tpm(A))["code"] == "SUCCESS"  # allowed via the base OS image's content
        finally:
            dev.close()
    with ServeProcess(root) as proc:
        dev = DeviceClient(root, proc.info["api_port"], serial, device=device)
        try:
            dev.fetch_uuid(controller_signing_cert(dev))
            assert _quote(dev, _tpm(A))["code"] == "SUCCESS"
            assert _quote(dev, _tpm(A, fw=b"\x09"))["code"] == "QUOTE_FAILED"  # learned PCRs persisted
            admin = proc.admin()
            admin.set_tofu(False)
            assert _quote(dev, _tpm(A))["code"] == "QUOTE_FAILED"  # no declared template matches
        finally:
            dev.close()


def test_cli_content_add_offline_then_list_live(tmp_path: Path, image: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from eden.cli import main

    root = tmp_path / "c"
    init(root)
    assert main(["controller", "content", "add", "--dir", str(root), "cli-os", str(image[0]), "--version", "1.0",
                 "--pcr13", A]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sha256"] == image[1] and out["pcr13"] == A
    assert main(["controller", "content", "add", "--dir", str(root), "cli-os", str(tmp_path / "nope")]) == 2
    with ServeProcess(root):
        capsys.readouterr()
        assert main(["controller", "content", "list", "--dir", str(root)]) == 0
        listed = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["version"], r["sha256"]) for r in listed] == [("cli-os", "1.0", image[1])]


def test_cli_tofu_switches_the_controller_and_a_device(server: ServeProcess, admin: AdminClient,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from eden.cli import main

    root = str(server.layout.root)
    serial = _serial()
    admin.preregister(serial)
    try:
        assert main(["controller", "tofu", "on", "--dir", root]) == 0
        assert admin.request("GET", "/v1/settings")["tofu"] is True
        assert admin.device(serial)["tofu"] is True
        assert main(["controller", "tofu", "off", "--dir", root]) == 0
        assert admin.device(serial)["tofu"] is False
        assert main(["controller", "tofu", "on", "--dir", root, "--serial", serial]) == 0
        assert admin.device(serial)["tofu"] is True and admin.request("GET", "/v1/settings")["tofu"] is False
        assert main(["controller", "tofu", "reset", "--dir", root]) == 2  # reset needs a device
    finally:
        admin.set_tofu(False)
    capsys.readouterr()


def test_the_datastore_names_the_ca_a_real_eve_must_trust_for_it(server: ServeProcess, admin: AdminClient,
                                                                 image: tuple[Path, str]) -> None:
    """EVE's downloader trusts only the system pool plus the datastore's dsCertPEM (field 8;
    P:cmd/downloader/download.go WithTrustedCerts; spec §3 step 1): the served config must carry
    the CA of eden's TLS cert, and that PEM alone must be enough to fetch the content over TLS."""
    path, sha = image
    dev, signer = _onboarded_with_baseos(server, admin, "2.1")
    try:
        admin.add_content("ref-os", path, "2.1")
        status, body = dev.send("config", {"hash": "", "token": None})
        assert status == 200
        cfg = config_pb2.ConfigResponse.FromString(dev.open_reply(body, signer)).config
        (store,) = cfg.datastores
        (tree,) = cfg.contentInfo
        assert list(store.dsCertPEM) == [_root_pem(server)]
        assert config_pb2.DatastoreConfig.DESCRIPTOR.fields_by_name["dsCertPEM"].number == 8
        ctx = ssl.create_default_context(cadata=b"".join(store.dsCertPEM).decode())
        url = f"{_base(server)}/{store.dpath}/{tree.URL}"
        with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:
            assert hashlib.sha256(resp.read()).hexdigest() == sha == tree.sha256
        other = ssl.create_default_context()  # the system pool alone refuses eden's datastore
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, context=other, timeout=30)
    finally:
        dev.close()
