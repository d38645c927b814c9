"""The reference-image platform keeps the node model and the real A/B boot-state record in step.

A boot-state record in a plain file stands in for the BOOTSTATE partition (the same bytes; the
real partition is exercised on a VM by the qemu backend tests); boot.env and release.json are
written as the boot stage and the slot builder write them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

from eden.agent.platform import ReferenceImagePlatform
from eden.agent.spec import AgentSpec
from eden.image import bootstate as bs
from eve.enums import BootReason, PartitionState
from eve.node import Node

SPEC = {
    "serial": "pf-1",
    "profile": "qemu-x86_64",
    "image": "base",
    "images": {"base": {"version": "13.4.0"}, "next": {"version": "13.5.0", "size": 1000}},
    "boot_time": 1.0,
}
PCRS = {i: bytes([i]) * 32 for i in range(16)}


class FixedTpm:
    kind = "tpm2-tools"

    def measured(self, pcrs: Mapping[int, bytes]) -> None:
        pass

    def read(self) -> dict[int, bytes]:
        return dict(PCRS)


def _fmt(state: bs.BootState) -> str:
    return " ".join(f"{s} {state[s].priority} {state[s].tries} {state[s].successful}" for s in bs.SLOTS)


class Device:
    """A boot as the boot stage leaves it: the record after its choice, boot.env, release.json."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dev = tmp / "bootstate.img"
        self.dev.write_bytes(b"\0" * 4096)
        self.events: list[tuple[str, dict[str, Any]]] = []

    def boot(self, before: bs.BootState, release: dict[str, str] | None) -> ReferenceImagePlatform:
        slot, after = bs.select_next(before)
        assert slot is not None
        bs.write(self.dev, after)
        env = self.tmp / "boot.env"
        env.write_text(f'EDEN_SLOT={slot}\nEDEN_BOOTSTATE_DEV={self.dev}\nEDEN_BOOTSTATE_BEFORE="{_fmt(before)}"\n')
        rel = self.tmp / "release.json"
        rel.write_text("{}" if release is None else __import__("json").dumps(release))
        return ReferenceImagePlatform(persist_dir=self.tmp, tpm=FixedTpm(), notify=lambda w, d: self.events.append((w, dict(d))),
                                      boot_env=env, release_file=rel)


def _node() -> Node:
    spec = AgentSpec.model_validate(SPEC)
    return Node(spec.node_params(), "base", np.random.default_rng(1), np.random.default_rng(2))


def _power_on(node: Node, plat: ReferenceImagePlatform) -> None:
    plat.before_power_on(node)
    node.power_on(0.0)
    plat.after_power_on(node)
    plat.sync(node)


def test_first_boot_agrees_with_the_disk_and_quotes_the_tpm(tmp_path: Path) -> None:
    d = Device(tmp_path)
    plat = d.boot(bs.FACTORY, {"name": "base", "version": "13.4.0", "behaviour": "good"})
    node = _node()
    _power_on(node, plat)
    assert node.zboot.current == "IMGA"
    assert node.pcrs == PCRS
    assert not [e for e in d.events if e[0] == "platform_mismatch"]
    assert bs.read(d.dev) == bs.FACTORY  # nothing to mirror


def test_commit_of_the_test_boot_is_written_to_the_disk(tmp_path: Path) -> None:
    d = Device(tmp_path)
    node = _node()
    zb = node.persist.zboot
    zb.current = "IMGA"
    zb.write_other("13.5.0", "next")
    zb.set_updating("IMGB")
    plat = d.boot(bs.BootState(a=bs.ACTIVE, b=bs.UPDATING), {"name": "next", "version": "13.5.0", "behaviour": "good"})
    _power_on(node, plat)
    assert node.zboot.current == "IMGB" and node.zboot["IMGB"].state == PartitionState.INPROGRESS
    assert bs.read(d.dev) == bs.BootState(a=bs.ACTIVE, b=bs.INPROGRESS)
    node.zboot.mark_current_active()  # what the model's test-window commit does (spec §3 step 6)
    plat.sync(node)
    assert bs.read(d.dev) == bs.BootState(a=bs.UNUSED, b=bs.ACTIVE)
    assert [e for e in d.events if e[0] == "platform_bootstate"]


def test_a_try_spent_by_a_crash_the_agent_never_saw_is_a_rollback(tmp_path: Path) -> None:
    """B was set updating; the boot into it crashed before the agent ran; the boot stage comes
    back to A. The model must see B's try as the previous boot: a rollback, reported with the
    stale UPDATE reason A's nodeagent wrote and no swErr (spec §3, the last row of the table)."""
    d = Device(tmp_path)
    node = _node()
    zb = node.persist.zboot
    zb.current = "IMGA"
    node.persist.last_booted = "IMGA"
    node.persist.restart_counter = 1
    node.persist.reboot_record = (BootReason.UPDATE, "NORMAL: baseos-update(IMGB) to EVE version 13.5.0 reboot")
    node.persist.reboot_image = "IMGA"
    zb.write_other("13.5.0", "next")
    zb.set_updating("IMGB")
    spent = bs.BootState(a=bs.ACTIVE, b=bs.INPROGRESS)
    plat = d.boot(spent, {"name": "base", "version": "13.4.0", "behaviour": "good"})
    _power_on(node, plat)
    assert node.zboot.current == "IMGA"
    assert ("platform_unseen_boot", {"partition": "IMGB"}) in d.events
    node.on_timer("booted", 5.0)
    assert node.boot_reason == BootReason.UPDATE and node.rolled_back == "13.5.0"
    assert "13.5.0" not in node.persist.failed


def test_the_disk_wins_when_the_model_disagrees(tmp_path: Path) -> None:
    d = Device(tmp_path)
    node = _node()
    plat = d.boot(bs.BootState(a=bs.ACTIVE, b=bs.UNUSED), {"name": "next", "version": "13.5.0", "behaviour": "good"})
    _power_on(node, plat)
    assert node.zboot["IMGA"].version == "13.5.0"  # release.json of the booted root
    assert any(w == "platform_mismatch" for w, _ in d.events)


def test_download_gate_needs_content_from_the_controller(tmp_path: Path) -> None:
    d = Device(tmp_path)
    got: list[tuple[str, str, int]] = []

    async def download(path: str, dest: Path, sha256: str, size: int) -> None:
        got.append((path, sha256, size))
        dest.write_bytes(b"slot")

    plat = d.boot(bs.FACTORY, None)
    plat.download = download
    node = _node()
    _power_on(node, plat)
    node.persist.bos = {"version": "13.5.0", "image": "next"}
    node.persist.config = {"baseos": {"version": "13.5.0", "image": "next"}}
    with pytest.raises(Exception, match="no content"):
        asyncio.run(plat.gate("bos_download", node))  # type: ignore[arg-type]
    content = {"sha256": "ab" * 32, "size": 4, "url": "/eden/datastore/sha256/" + "ab" * 32}
    node.persist.config = {"baseos": {"version": "13.5.0", "image": "next", "content": content}}
    asyncio.run(plat.gate("bos_download", node))  # type: ignore[arg-type]
    asyncio.run(plat.gate("bos_download", node))  # type: ignore[arg-type]  # already there: no second fetch
    assert got == [(content["url"], content["sha256"], 4)]
    assert plat.gate("config", node) is None
