"""zedmanager's memory admission of an app instance (spec §8), as pure functions the node calls.

EVE checks memory when it activates an app — after the download and the volumes, never when the
config arrives (P:cmd/zedmanager/updatestatus.go `doActivate`). The need is the app's memory plus
the VMM overhead (P:hypervisor/vmm_overhead.go `vmmOverhead`); what remains is the device's total
less EVE's reservation and every app that is activated or activating
(P:cmd/zedmanager/memorysizemgmt.go `getRemainingMemory`). There is no vCPU-versus-cores check
anywhere in zedmanager or domainmgr: an unpinned VM gets every shared CPU and QEMU overcommits
(P:cmd/domainmgr/domainmgr.go `assignCPUs`; only pinned CPUs are allocated, which the model
does not have).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MiB = 1 << 20

RETRY_TICK = (5.0, 10.0)
"""zedmanager's freeResourceChecker: a range ticker of 5-10 s that runs `checkRetry` when
something freed resources (P:cmd/zedmanager/zedmanager.go)."""


def config_memory(spec: dict[str, Any]) -> int:
    """The app's memory as EVE holds it: FixedResources.Memory is in KiB (rounded up on the wire)."""
    return -(-int(spec["memory"]) // 1024) << 10


def vmm_overhead(spec: dict[str, Any], vmm_limit_mib: int) -> int:
    """Bytes the hypervisor needs besides the guest's RAM (`CountMemOverhead`, KVM).

    A container runs NOHYPER here (eden's codec), which has no VMM and no overhead. For a VM,
    `memory.vmm.limit.MiB` > 0 replaces the estimate; otherwise the estimate is 350 MiB
    (undefined) + 2.5 % of the RAM + 20 MiB (QEMU) + 3 MiB per vCPU; MMIO of passed-through
    GPUs adds nothing as the model assigns no adapters (`estimatedVMMOverhead`). The
    per-app VMMMaxMem field is not part of an eden app and is 0.
    """
    if spec.get("kind") != "vm":
        return 0
    if vmm_limit_mib > 0:
        return vmm_limit_mib << 20
    ram_kib = config_memory(spec) >> 10
    return 350 * MiB + ram_kib * 1024 * 25 // 1000 + 20 * MiB + int(spec["cpus"]) * 3 * MiB


@dataclass(frozen=True)
class Shortage:
    """Why an activation waits: the appErr text and its severity (ErrorDescription)."""

    error: str
    severity: str  # ERROR, WARNING or NOTICE (types.ErrorSeverity)


def check(need: int, remaining: int, halting: int, others_active: bool) -> Shortage | None:
    """`doActivate`'s verdict: None when ``need`` fits in ``remaining``.

    ``halting`` is the memory of activated apps whose config is gone or deactivated: when it would
    cover the gap the text says so (a notice). Otherwise a plain error, lowered to a warning while
    other apps are active, since their shutdown triggers a retry.
    """
    if remaining >= need:
        return None
    if remaining + halting < need:
        text = f"Remaining memory bytes {remaining} app instance needs {need}"
        severity = "WARNING" if others_active else "ERROR"
    else:
        text = (
            f"App instance needs {need} bytes but only have {remaining}; "
            f"waiting for one or more halting app instances to free up {halting} bytes"
        )
        severity = "NOTICE"
    return Shortage(text, severity)
