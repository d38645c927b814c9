"""The agent's fault inbox: agent faults a scenario injects into a running device agent.

On the simulator the harness calls the node's fault inputs directly (``Node.hang``,
``Node.oom``, ...). A device agent is another process, on the emulated backend beside the
harness and on the qemu backend inside a VM, so the harness appends the fault as one JSON line
to a file the agent watches (``eden agent --faults-file``): the emulated backend writes it in the
device's directory, the qemu backend over SSH into :data:`FAULTS_IN_IMAGE`. A line is the scenario
action and its arguments::

    {"action": "hang", "agent": "zedagent"}
    {"action": "crash", "kind": "oom", "agent": "zedagent"}

Both ends map a fault to the same node input (:func:`node_input`), so the watchdog, kdump and
log.Fatal rules that follow (spec §7, eve/agents/watchdog.py) are the model's on every backend.

A fault is for the boot that is running when it is sent: the inbox reads only the lines appended
after it was opened (at the agent's start), as a fault injected into a device that is off or still
booting changes nothing on the simulator either (the node takes faults only while RUNNING). The
file is someone else's to write, so reading is bounded (:data:`MAX_LINE`, :data:`MAX_READ`); a
line that is not a fault is refused (reported, skipped) and the rest are still read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

FAULTS_IN_IMAGE = Path("/run/eden/faults")
"""Where the reference image's agent reads its faults (scripts/image-agent-start)."""
FAULT_POLL = 1.0
"""Seconds between two reads of the inbox."""
MAX_LINE = 4096
MAX_READ = 64 * 1024
CrashKind = Literal["kernel", "oom", "fatal", "agent_exit"]
_CRASH_INPUT: dict[str, str] = {"oom": "oom", "fatal": "agent_fatal", "agent_exit": "agent_exit"}
"""The node input (eve.node.Node) of each agent ``crash`` kind but ``kernel`` (``kernel_panic``)."""


class Fault(BaseModel):
    """One line of the inbox: the scenario's ``hang`` or ``crash`` step for this device."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["hang", "crash"]
    agent: str = "zedagent"
    kind: CrashKind | None = None

    def line(self) -> str:
        return self.model_dump_json(exclude_none=True) + "\n"


def node_input(fault: Fault) -> tuple[str, tuple[str, ...]]:
    """The :class:`eve.node.Node` method a fault is and its arguments before ``now``; the simulator's
    device port calls the same (eden/backends/sim_ports.py)."""
    if fault.action == "hang":
        return "hang", (fault.agent,)
    if fault.kind is None:
        raise ValueError("a crash needs a kind")
    if fault.kind == "kernel":
        return "kernel_panic", ()
    return _CRASH_INPUT[fault.kind], (fault.agent,)


def parse_fault(line: str) -> Fault:
    """One inbox line as a :class:`Fault`; ValueError says why it is not one."""
    try:
        fault = Fault.model_validate(json.loads(line))
    except (ValueError, ValidationError) as exc:
        raise ValueError(str(exc).splitlines()[0][:200]) from None
    if fault.action == "crash" and fault.kind is None:
        raise ValueError("a crash needs a kind")
    return fault


@dataclass(frozen=True, slots=True)
class Refused:
    line: str
    why: str


class FaultInbox:
    """The lines appended to ``path`` since the inbox was opened, read in bounded pieces."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = self._size()
        self._partial = b""

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def read(self) -> tuple[list[Fault], list[Refused]]:
        """New faults, and the lines refused, since the last read (at most :data:`MAX_READ` bytes a call)."""
        size = self._size()
        if size < self._offset:  # replaced or truncated: what is there now is new
            self._offset, self._partial = 0, b""
        if size == self._offset:
            return [], []
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read(MAX_READ)
        except OSError:
            return [], []
        self._offset += len(chunk)
        *lines, rest = (self._partial + chunk).split(b"\n")
        faults: list[Fault] = []
        refused: list[Refused] = []
        if len(rest) > MAX_LINE:
            refused.append(Refused(rest[:80].decode(errors="replace"), f"a line longer than {MAX_LINE} bytes"))
            rest = b""
        self._partial = rest
        for raw in lines:
            text = raw.decode(errors="replace").strip()
            if not text:
                continue
            if len(raw) > MAX_LINE:
                refused.append(Refused(text[:80], f"a line longer than {MAX_LINE} bytes"))
                continue
            try:
                faults.append(parse_fault(text))
            except ValueError as exc:
                refused.append(Refused(text[:80], str(exc)))
        return faults, refused
