"""``eden image`` CLI and cache bookkeeping (no build: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eden.cli import main
from eden.image import build as b


def _fake_image(cache: Path, key: str, built: str) -> Path:
    d = cache / key
    d.mkdir(parents=True)
    (d / "disk.img").write_bytes(b"\0" * 4096)
    (d / "image.json").write_text(json.dumps({"key": key, "version": f"ref-{key[:8]}", "built": built,
                                              "build_seconds": 1.0, "kernel": {"release": "6.1.0-x-cloud-amd64"}}))
    return d


def test_info_lists_cached_images_newest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "info", "--cache", str(tmp_path)]) == 0
    assert "no images in" in capsys.readouterr().out
    _fake_image(tmp_path, "aaaa000000000000", "2026-01-01T00:00:00Z")
    _fake_image(tmp_path, "bbbb000000000000", "2026-02-01T00:00:00Z")
    (tmp_path / ".aaaa.build-1").mkdir()  # an unfinished build is not an image
    assert main(["image", "info", "--cache", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [i["key"] for i in listed] == ["bbbb000000000000", "aaaa000000000000"]
    assert main(["image", "info", "--cache", str(tmp_path)]) == 0
    assert "ref-bbbb0000" in capsys.readouterr().out


def test_env_sets_the_default_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDEN_IMAGE_CACHE", str(tmp_path / "c"))
    assert b.default_cache() == tmp_path / "c"
    monkeypatch.delenv("EDEN_IMAGE_CACHE")
    assert b.default_cache() == Path.home() / ".cache" / "eden" / "images"


def test_cache_key_changes_with_every_input() -> None:
    base = b.Inputs("http://m/debian", ("linux-image-1-cloud-amd64", "1"), (("numpy", "2.0"),), "f" * 64, "")
    variants = [
        b.Inputs("http://other/debian", base.kernel, base.dists, base.files_digest, ""),
        b.Inputs(base.mirror, ("linux-image-1-cloud-amd64", "2"), base.dists, base.files_digest, ""),
        b.Inputs(base.mirror, base.kernel, (("numpy", "2.1"),), base.files_digest, ""),
        b.Inputs(base.mirror, base.kernel, base.dists, "e" * 64, ""),
        b.Inputs(base.mirror, base.kernel, base.dists, base.files_digest, "ssh-ed25519 AAAA x"),
    ]
    keys = {v.key() for v in variants}
    assert base.key() == b.Inputs(*base.__dict__.values()).key()
    assert len(keys) == len(variants) and base.key() not in keys


def test_project_files_cover_the_guest_scripts_and_sources() -> None:
    files = {str(p.relative_to(b.REPO)) for p in b._project_files()}
    assert {"scripts/image-init", "scripts/image-bootstate.sh", "eden/image/bootstate.py",
            "eve/zboot.py", "hw_profiles/qemu-x86_64.yaml"} <= files


def test_apt_mirror_reads_both_source_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n")
    assert b.apt_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://one.example/debian bookworm main\n")
    assert b.apt_mirror(tmp_path) == "http://one.example/debian"
    assert b.apt_mirror(tmp_path / "nothing") == "http://deb.debian.org/debian"


def test_agent_distributions_are_what_the_agent_imports() -> None:
    names = {d.metadata["Name"].lower().replace("_", "-") for d in b.agent_distributions()}
    assert {"aiohttp", "cryptography", "protobuf", "pydantic", "numpy", "pyyaml"} <= names
    assert "setuptools" not in names and "pytest" not in names


def test_build_rejects_a_missing_keys_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "build", "--cache", str(tmp_path), "--authorized-keys", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
