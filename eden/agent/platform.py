"""The device's real hardware under the node model: A/B boot state, base-OS content and the TPM.

The node model (``eve.node.Node``) keeps its own picture of the two base-OS partitions
(``Persist.zboot``) and decides every rule: when to download, write, commit or fall back (spec §3).
On the simulator and the emulated backend that picture is all there is. Inside the reference image
(docs/reference-image.md) there is a real disk: the boot stage picked the slot from the BOOTSTATE
partition before the agent started, and a new image must really be written into the other
partition. A :class:`Platform` joins the two without writing any rule twice:

* **before power-on** the model's partition states are set from the boot-state record *as it was
  before this boot's selection* (the boot stage leaves it in ``/run/eden/boot.env``); the model
  then replays ``gptprio.next`` itself, and **after power-on** the platform checks that it picked
  the slot the boot stage booted (a disagreement is reported, and the disk wins). The running
  version comes from the booted root filesystem's ``/etc/eden/release.json``. The PCRs the model
  seals and quotes are replaced by what the real TPM holds (measured by firmware and boot stage).
* **gates**: the model's ``bos_download`` and ``bos_write`` timers are delivered only once the real
  work is done: the image's content downloaded from the controller's datastore and verified against
  its sha256, then written into the other partition and read back (``GuestBoot.install_other``).
* **after every step** the model's partition states are mirrored onto the real boot-state record
  when they changed (commit, retry, force fallback): the agent commits or falls back, the harness
  never touches the disk.

:class:`NoPlatform` is the model alone (simulator semantics), used everywhere else.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Protocol

from eve.enums import PartitionState
from eve.vocab import Timer

if TYPE_CHECKING:
    from eden.agent.tpm import Tpm
    from eden.image.bootstate import BootState, Slot
    from eve.node import Node
    from eve.vocab import TimerName

RELEASE_FILE = Path("/etc/eden/release.json")
DOWNLOAD_DIR_NAME = "downloads"

Notify = Callable[[str, Mapping[str, Any]], None]
Download = Callable[[str, Path, str, int], Awaitable[None]]
"""``download(url_path, dest, sha256, size)``: fetch content from the controller, verified."""


class PlatformError(RuntimeError):
    """The hardware could not do what the model asked (retried by the driver)."""


class Platform(Protocol):
    name: str

    def before_power_on(self, node: "Node") -> None: ...

    def after_power_on(self, node: "Node") -> None: ...

    def gate(self, timer: "TimerName", node: "Node") -> Awaitable[None] | None: ...

    def sync(self, node: "Node") -> None: ...

    def links_down(self) -> frozenset[str] | None:
        """The ports whose link is down now, as nim learns it from the kernel (spec §4), or None
        where nothing tells (the model's links are then all up)."""
        ...


class NoPlatform:
    """The model is the device: nothing real to keep in step. Its cables are a file: ``links_file``
    names the ports whose link is down, one per line, written by whoever plays the cable (the
    emulated backend's ``network_down``); an absent file means every link is up."""

    name = "model"

    def __init__(self, links_file: Path | None = None) -> None:
        self.links_file = links_file

    def links_down(self) -> frozenset[str] | None:
        if self.links_file is None:
            return None
        try:
            text = self.links_file.read_text()
        except FileNotFoundError:
            return frozenset()
        except OSError:
            return None  # unreadable for now: keep what the node knows
        return frozenset(line.strip() for line in text.splitlines() if line.strip())

    def before_power_on(self, node: "Node") -> None:
        pass

    def after_power_on(self, node: "Node") -> None:
        pass

    def gate(self, timer: "TimerName", node: "Node") -> Awaitable[None] | None:
        return None

    def sync(self, node: "Node") -> None:
        pass


def _slot_for(state: PartitionState) -> "Slot":
    from eden.image import bootstate as bs

    return {PartitionState.ACTIVE: bs.ACTIVE, PartitionState.UPDATING: bs.UPDATING,
            PartitionState.INPROGRESS: bs.INPROGRESS, PartitionState.UNUSED: bs.UNUSED}[state]


def _state_for(slot: "Slot") -> PartitionState | None:
    named = {"active": PartitionState.ACTIVE, "updating": PartitionState.UPDATING,
             "inprogress": PartitionState.INPROGRESS, "unused": PartitionState.UNUSED}
    return named.get(slot.state_name())


def model_bootstate(node: "Node") -> "BootState":
    from eden.image.bootstate import BootState

    zb = node.zboot
    return BootState(a=_slot_for(zb["IMGA"].state), b=_slot_for(zb["IMGB"].state))


class ReferenceImagePlatform:
    """The reference image's disk and TPM (see the module docstring)."""

    name = "reference-image"

    def __init__(self, *, persist_dir: Path, tpm: "Tpm", notify: Notify, download: Download | None = None,
                 boot_env: Path | None = None, release_file: Path = RELEASE_FILE) -> None:
        from eden.image.guest import BOOT_ENV, GuestBoot

        self.boot = GuestBoot.load(boot_env or BOOT_ENV)
        self.tpm = tpm
        self.notify = notify
        self.download = download
        self.downloads = persist_dir / DOWNLOAD_DIR_NAME
        self.release = _read_release(release_file)
        self._mirrored: Any = None

    # ---------------------------------------------------------------------------------- boot --
    def before_power_on(self, node: "Node") -> None:
        before = self.boot.before
        if before is None:
            return
        for slot, label in (("A", "IMGA"), ("B", "IMGB")):
            state = _state_for(before[slot])
            if state is None:
                continue
            if node.on_disk_state(label, state, before_boot=True):
                self.notify("platform_unseen_boot", {"partition": label})

    def after_power_on(self, node: "Node") -> None:
        zb = node.zboot
        booted = f"IMG{self.boot.slot}"
        if zb.current != booted:
            self.notify("platform_mismatch", {"model": zb.current, "booted": booted})
            node.on_booted_from(booted)
        real = self.boot.state()
        for slot, label in (("A", "IMGA"), ("B", "IMGB")):
            state = _state_for(real[slot])
            if state is not None and zb[label].state != state:
                self.notify("platform_mismatch", {"partition": label, "model": zb[label].state.value, "disk": state.value})
                node.on_disk_state(label, state)
        if self.release:
            cur = zb[booted]
            if cur.version is not None and cur.version != self.release.get("version"):
                self.notify("platform_mismatch", {"partition": booted, "model_version": cur.version,
                                                  "disk_version": self.release.get("version")})
            node.on_disk_release(booted, self.release.get("version"), self.release.get("name"))
        node.on_measured(self.tpm.read())
        self._mirrored = model_bootstate(node)
        self.notify("platform_boot", {"slot": self.boot.slot, "version": zb[booted].version,
                                      "pcrs": {str(i): v.hex() for i, v in sorted(node.pcrs.items())}})

    # --------------------------------------------------------------------------------- gates --
    def gate(self, timer: "TimerName", node: "Node") -> Awaitable[None] | None:
        if timer == Timer.BOS_DOWNLOAD:
            return self._download(node)
        if timer == Timer.BOS_WRITE:
            return self._write(node)
        return None

    def _content(self, node: "Node") -> tuple[str, dict[str, Any]]:
        entry = node.persist.bos or {}
        cfg = (node.persist.config or {}).get("baseos") or {}
        content = cfg.get("content") if cfg.get("version") == entry.get("version") else None
        if not content or not content.get("sha256"):
            raise PlatformError(f"the controller offers no content for base OS {entry.get('version')!r}")
        return str(entry.get("version")), dict(content)

    def _file(self, sha256: str) -> Path:
        return self.downloads / f"{sha256}.slot"

    async def _download(self, node: "Node") -> None:
        version, content = self._content(node)
        dest = self._file(content["sha256"])
        if dest.is_file():
            return  # verified before it was renamed into place
        if self.download is None:
            raise PlatformError("no downloader")
        self.downloads.mkdir(parents=True, exist_ok=True)
        for old in self.downloads.glob("*.slot"):  # one image at a time: /persist is small
            old.unlink(missing_ok=True)
        self.notify("platform_download", {"version": version, "sha256": content["sha256"], "size": content.get("size")})
        await self.download(str(content["url"]), dest, str(content["sha256"]), int(content.get("size") or 0))
        self.notify("platform_downloaded", {"version": version, "bytes": dest.stat().st_size})

    async def _write(self, node: "Node") -> None:
        version, content = self._content(node)
        src = self._file(content["sha256"])
        if not src.is_file():
            raise PlatformError(f"base OS {version} is not downloaded")
        self.notify("platform_write", {"version": version, "partition": f"IMG{self.boot.other}"})
        try:
            state = await asyncio.to_thread(self.boot.install_other, src)
        except (OSError, ValueError) as exc:
            raise PlatformError(f"writing {version} into IMG{self.boot.other}: {exc}") from exc
        self._mirrored = state
        self.notify("platform_written", {"version": version, "state": state.to_json()})

    def links_down(self) -> frozenset[str] | None:
        """None: the image's downloads are real transfers over its NICs, so a cut link stops them
        for real; the model's download timers are not used here."""
        return None

    # ---------------------------------------------------------------------------------- sync --
    def sync(self, node: "Node") -> None:
        """Mirror the model's partition states onto the boot-state record when they changed."""
        if node.zboot.current is None or self._mirrored is None:
            return
        want = model_bootstate(node)
        if want == self._mirrored:
            return
        from eden.image import bootstate as bs

        bs.write(self.boot.bootstate_dev, want)
        self._mirrored = want
        self.notify("platform_bootstate", {"state": want.to_json()})


def _read_release(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
