"""Properties of the A/B update over generated one-device scenarios (hypothesis).

Each example is a scenario file written from drawn parameters - seed, hardware profile, how the
new image behaves, whether a power cut hits its test window and when, timers within the ranges of
spec §6 - and run on the simulator backend. Whatever is drawn:

* the device never ends on a partition that cannot boot, and is never bricked;
* every failed update ends on the previous version, the new one left inprogress, with the boot
  reason EVE would report (spec §3): FALLBACK from nodeagent's timer, POWER_FAIL or UNKNOWN (by the
  profile's disk, §7) after a power cut, the stale UPDATE after an image that died before its
  nodeagent ran; baseOS FAILED with a swErr, except in the last case (NONE, no swErr); and every
  update that was not sabotaged ends committed on the new version;
* the same seed gives byte-identical summaries.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eden.backends.sim import SimBackend
from eden.profiles import load_profiles
from eden.run import build_summary, execute, load_for_backend
from eden.runner import Runner, run_verdict
from eve.enums import BaseOsStatus, BootReason, PartitionState

PROFILES = sorted(load_profiles())
BEHAVIOURS = ("good", "crash-on-boot", "no-controller")
BASE, NEXT = "13.4.0", "13.5.0"

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Case:
    seed: int
    profile: str
    behaviour: str
    config_interval: int  # timer.config.interval, §6 range 5..86400 (kept small)
    test_window: int  # timer.test.baseimage.update, §6 range 30..3600
    fallback: int  # timer.update.fallback.no.network, §6 min 60
    cut: str | None  # None, "rebooting" (other=updating, before the update reboot) or "testing"
    cut_after: float  # seconds after the device reports that state
    off_for: int

    @property
    def sabotaged(self) -> bool:
        """A cut during the reboot procedure is harmless: the new image still has its one try."""
        return self.behaviour != "good" or self.cut == "testing"

    @property
    def settle(self) -> int:
        """Long enough for download, write, reboots, boots, the window(s) and a fallback."""
        return 1800 + 2 * self.test_window + 2 * self.fallback + self.off_for

    def yaml(self) -> str:
        fault = ""
        if self.cut is not None:
            when = {"rebooting": "other_partition: {state: updating, version: next}",
                    "testing": "current_partition: {state: inprogress, version: next}"}[self.cut]
            fault = f"""
faults:
  - power_cycle: {{off_for: {self.off_for}s}}
    when: {{{when}}}
    after: {self.cut_after}s
"""
        return f"""\
name: prop-update
seed: {self.seed}
fleet:
  - profile: {self.profile}
    group: dut
    overrides:
      failures: {{boot_hang: 0, hang_per_day: 0, write_error: 0}}
images:
  base: {{version: {BASE}}}
  next: {{version: {NEXT}, behaviour: {self.behaviour}}}
controller:
  config_items:
    timer.config.interval: {self.config_interval}
    timer.test.baseimage.update: {self.test_window}
    timer.update.fallback.no.network: {self.fallback}
steps:
  - power_on: {{}}
  - expect: {{device_state: ONLINE, within: 10m}}
  - baseos_update: {{image: next, activate: true}}
  - wait: {self.settle}s
{fault}
expect:
  - name: never bricked
    bricked: false
    always: true
"""


@st.composite
def cases(draw: Any) -> Case:
    window = draw(st.integers(30, 900))
    behaviour = draw(st.sampled_from(BEHAVIOURS))
    cut = draw(st.sampled_from([None, "rebooting", "testing"]))
    # The fault fires on the controller's view of the device (up to a check interval plus an info
    # round trip late): "rebooting" lands inside the 60 s reboot procedure, "testing" at least 15 s
    # before the commit.
    latest = 45.0 if cut == "rebooting" else float(window - 15)
    after = draw(st.floats(0.0, latest, allow_nan=False).map(lambda x: round(x, 1)))
    event(f"image {behaviour}, cut {cut}")
    return Case(
        seed=draw(st.integers(0, 2**31 - 1)),
        profile=draw(st.sampled_from(PROFILES)),
        behaviour=behaviour,
        config_interval=draw(st.integers(5, 60)),
        test_window=window,
        fallback=draw(st.integers(60, 400)),
        cut=cut,
        cut_after=after,
        off_for=draw(st.integers(1, 60)),
    )


def _load(case: Case, directory: str) -> Any:
    path = Path(directory) / "prop-update.yaml"
    path.write_text(case.yaml())
    return load_for_backend(path, "sim")


def simulate(case: Case) -> tuple[SimBackend, Runner, dict[str, Any]]:
    """Run the case as ``eden.run.execute`` does, keeping the backend to look at the node."""
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _load(case, tmp)
        backend = SimBackend(loaded, seed=case.seed)
        runner = Runner(loaded, backend, seed=case.seed)
        backend.run(runner.main(), duration=loaded.scenario.duration)
        runner.finish()
        summary = build_summary(loaded, "sim", case.seed, run_verdict(runner), runner, backend, None)
    return backend, runner, summary


def check_cut_landed(case: Case, backend: SimBackend) -> None:
    """The generated fault did what the case says: one power cut, inside the intended phase."""
    events = [(e.t, e.what, e.data) for e in backend.timeline if e.source == "device"]
    cuts = [t for t, what, _d in events if what == "power_off"]
    if case.cut is None:
        assert cuts == []
        return
    if case.behaviour != "good" and case.cut == "testing":
        assert cuts == []  # a bad image never reports its test boot: the fault has nothing to fire on
        return
    assert len(cuts) == 1, cuts
    cut = cuts[0]
    if case.cut == "testing":  # after the new image's agents started, before its commit
        assert any(what == "booted" and d["testing"] for t, what, d in events if t <= cut)
        assert not any(what == "update_committed" for t, what, _d in events if t <= cut)
    else:
        scheduled = [t for t, what, d in events if what == "reboot_scheduled" and d["reason"] == "UPDATE"]
        resets = [t for t, what, _d in events if what == "reset"]
        assert scheduled and scheduled[0] <= cut and not [r for r in resets if scheduled[0] <= r <= cut]


@given(cases())
@FAST
def test_never_ends_on_an_unbootable_partition_and_never_bricked(case: Case) -> None:
    backend, _runner, summary = simulate(case)
    node = backend.nodes[0]
    zb = node.zboot
    assert not node.bricked and node.phase == "running", (node.phase, zb.snapshot())
    assert zb.bootable(), zb.snapshot()
    cur = zb.current_partition
    assert cur.version is not None, zb.snapshot()
    # bootable for GRUB (active), or the one test boot of a new image while it is being tested
    assert cur.state == PartitionState.ACTIVE or (cur.state == PartitionState.INPROGRESS and node.nodeagent.testing), zb.snapshot()
    # the partition GRUB would pick on the next boot holds an image
    labels = [lbl for lbl in ("IMGA", "IMGB") if zb[lbl].bootable]
    assert labels and all(zb[lbl].version is not None for lbl in labels)
    never = [e for e in summary["expectations"] if e["name"] == "never bricked"][0]
    assert never["status"] == "passed"


def synthesized(case: Case) -> BootReason:
    """What nodeagent makes of an unrecorded power cut on this profile's disk (§7)."""
    return BootReason.POWER_FAIL if load_profiles()[case.profile].storage.reports_power_cycles else BootReason.UNKNOWN


def failed_reasons(case: Case) -> set[BootReason]:
    """The boot reasons EVE reports after this case's failed update (§3 "Controller view of a rollback")."""
    if case.behaviour == "crash-on-boot":
        # died before its nodeagent ran: the old image's stale UPDATE record, or none at all when a
        # power cut in the reboot procedure came before nodeagent wrote it
        return {BootReason.UPDATE, synthesized(case)} if case.cut == "rebooting" else {BootReason.UPDATE}
    if case.behaviour == "good":
        return {synthesized(case)}  # the power cut in the test window
    # no-controller: nodeagent's fallback timer, unless the power cut came first
    return {BootReason.FALLBACK, synthesized(case)} if case.cut == "testing" else {BootReason.FALLBACK}


@given(cases())
@FAST
def test_every_failed_update_ends_on_the_previous_version_with_the_reason_eve_reports(case: Case) -> None:
    backend, _runner, _summary = simulate(case)
    check_cut_landed(case, backend)
    node = backend.nodes[0]
    zb = node.zboot
    view = backend.view(0)
    status, _sub, err = node.baseosmgr.user_status()
    if case.sabotaged:
        assert node.running_version == BASE, zb.snapshot()
        assert zb.current_partition.state == PartitionState.ACTIVE
        assert zb.other_partition.version == NEXT and zb.other_partition.state == PartitionState.INPROGRESS
        assert node.boot_reason in failed_reasons(case), (node.boot_reason, node.boot_reason_text)
        if node.boot_reason == BootReason.UPDATE:
            assert status == BaseOsStatus.NONE and not err  # no swErr: reboot-image names the old image
        else:
            assert status == BaseOsStatus.FAILED and err
        # ... and that is what the controller was told
        assert view["boot_reason"] == node.boot_reason.name and view["baseos"]["status"] == status.name
        assert [s["version"] for s in view["sw"]] == [BASE, NEXT]
    else:
        assert node.running_version == NEXT, zb.snapshot()
        assert zb.current_partition.state == PartitionState.ACTIVE
        assert zb.other_partition.state == PartitionState.UNUSED and zb.other_partition.version == BASE
        # a cut in the reboot procedure before the reason was written shows as a power failure
        expected = {BootReason.UPDATE, synthesized(case)} if case.cut == "rebooting" else {BootReason.UPDATE}
        assert node.boot_reason in expected, (node.boot_reason, node.boot_reason_text)
        assert status == BaseOsStatus.UPDATED
        assert view["baseos"]["status"] == "UPDATED"


@given(cases())
@settings(max_examples=10, deadline=None)
def test_same_seed_same_summary(case: Case) -> None:
    texts = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            loaded = _load(case, tmp)
            out = Path(tmp) / "out"
            execute(loaded, backend_name="sim", out_dir=out)
            texts.append((out / "summary.json").read_text())
    assert texts[0] == texts[1]
    assert json.loads(texts[0])["seed"] == case.seed
