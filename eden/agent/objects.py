"""The per-object info an emulated device sends beside its device and app info (spec §2.2).

zedagent reports each volume and content tree whenever its status changes (handlevolume.go,
handlecontent.go: every create and modify, a uuid-only message on delete), and the hardware
report once when it starts (zedagent.go ``triggerPublishHwInfo``). eden's node model has no
volume or content-tree objects of its own: each app's image download and volume are read from
the node's ``apps`` and ``downloads`` here, one content tree and one volume per app.

Network instances: eden's config carries none and the node models none, so no
``ZI_NETWORK_INSTANCE`` is ever sent.

:class:`ObjectReports` keeps what the controller acknowledged this boot: an info exchange carries
only the objects that changed since (and a delete for each acknowledged one that is gone). A
failed exchange acknowledges nothing, so the node's info retry carries them again; a new boot
starts empty and reports every object once, as EVE's agents republish their status at start.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from eden.agent.spec import AgentSpec
from eden.errors import InvalidInput
from eden.profiles import HwProfile, load_profiles, profiles_dir
from eden.wire import codec, objinfo
from eve.node import Node, NodeParams

Obj = dict[str, Any]

_CONTENT_DONE = ("CREATING_VOLUME", "INSTALLED", "BOOTING", "RUNNING", "HALTING", "HALTED")
_IN_PROGRESS = ("DOWNLOAD_STARTED", "VERIFYING", "LOADING")


def hardware(params: NodeParams, node: Node, storage: int) -> Obj:
    """ZInfoHardware from the device's hardware facts and the running partition."""
    zb = node.zboot
    release = zb.current_partition.version if zb.current is not None else None
    _kind, _sep, rest = params.firmware.partition(":")
    return {"kind": "ZI_HARDWARE", "key": objinfo.HARDWARE_KEY, "data": {
        "release": release or "", "platform": params.profile, "partition": zb.current or "",
        "memory": int(params.memory), "storage": int(storage), "cores": int(params.cores), "tpm": bool(params.tpm),
        "firmware": rest.rpartition(":")[0] or rest,
        "nics": [{"name": p.name, "kind": p.kind, "speed_mbps": int(p.speed * 8 // 1_000_000)} for p in params.ports]}}


def storage_bytes(spec: AgentSpec) -> int:
    """The profile's disk size (NodeParams does not carry it); 0 when the profile cannot be read."""
    try:
        profiles = _profiles(str(profiles_dir()))
        return int(spec.hw_profile(profiles).storage.size)
    except (InvalidInput, OSError, ValueError):
        return 0


@functools.lru_cache(maxsize=4)
def _profiles(directory: str) -> dict[str, HwProfile]:
    """The profiles are read once per process (a fleet starts thousands of boots)."""
    return load_profiles(directory)


def app_objects(node: Node, now: float) -> list[Obj]:
    """One content tree and one volume per app, in the states volumemgr walks them."""
    out: list[Obj] = []
    for name, app in sorted(node.zedmanager.apps.items()):
        state = app["state"].name
        size = int(app["spec"].get("size", 0))
        dl = node.downloader.downloads.get(f"app/{name}")
        err = dl.err if dl is not None else ""  # the downloader's error, not an app's memory error
        if state in ("HALTING", "HALTED") and dl is not None and dl.state != "verified":
            state = "DOWNLOAD_STARTED"  # halted before its image was in
        progress = dl.progress_at(now) if dl is not None and state == "DOWNLOAD_STARTED" else 0
        if (dl is not None and dl.state == "verify_failed") or state == "ERROR":
            tree_state = vol_state = "ERROR"
        elif state in _IN_PROGRESS:
            tree_state = vol_state = state  # the volume waits on its content tree
        elif state in _CONTENT_DONE:
            tree_state = "LOADED"
            vol_state = "CREATING_VOLUME" if state == "CREATING_VOLUME" else "CREATED_VOLUME"
        else:
            tree_state = vol_state = "INITIAL"
        loaded = tree_state == "LOADED"
        out.append({"kind": "ZI_CONTENT_TREE", "key": codec.app_content_uuid(name), "data": {
            "name": name, "state": tree_state, "progress": 100 if loaded or state in ("VERIFYING", "LOADING") else progress,
            "size": size if loaded else 0, "err": err}})
        out.append({"kind": "ZI_VOLUME", "key": codec.app_volume_uuid(name), "data": {
            "name": name, "state": vol_state, "progress": 100 if vol_state == "CREATED_VOLUME" else progress,
            "max_size": size, "cur_size": size if vol_state == "CREATED_VOLUME" else 0, "err": err}})
    return out


class ObjectReports:
    """What this boot's info exchanges still have to carry, per object key."""

    def __init__(self, hardware_report: Callable[[], Obj] | None) -> None:
        self._make_hardware = hardware_report
        self._hardware: Obj | None = None
        self._acked: dict[tuple[str, str], Mapping[str, Any]] = {}

    def pending(self, node: Node, now: float) -> list[Obj]:
        """The objects whose report differs from the acknowledged one, then deletes; hardware first
        (made at the first info of the boot, once the partition is known)."""
        if self._hardware is None and self._make_hardware is not None:
            self._hardware = self._make_hardware()
        current = ([self._hardware] if self._hardware is not None else []) + app_objects(node, now)
        seen = {(o["kind"], o["key"]) for o in current}
        changed = [o for o in current if self._acked.get((o["kind"], o["key"])) != o["data"]]
        gone = [{"kind": k, "key": key, "data": None} for (k, key) in self._acked if (k, key) not in seen]
        return changed + gone

    def acknowledged(self, sent: list[Obj]) -> None:
        """The controller took every message of one exchange (2xx)."""
        for o in sent:
            key = (o["kind"], o["key"])
            if o["data"] is None:
                self._acked.pop(key, None)
            else:
                self._acked[key] = o["data"]
