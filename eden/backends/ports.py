"""The two halves of a backend: what it does through the controller and what it does to the devices.

A backend is a clock plus a :class:`ControllerPort` and a :class:`DevicePort`. The scenario
actions reach them only through the action table (:mod:`eden.backends.actions`), so a new backend
writes its ports and nothing else of the action vocabulary.

Every method takes scenario device ids. A port declares at class level, in ``capabilities``,
which of its methods it performs; the base classes refuse the rest with an
:class:`~eden.errors.InfrastructureError`. Validation reads the capabilities before a run starts,
so a refused method is never reached by a valid scenario. ``refusals`` gives the reason shown to
the user for a method this kind of backend could have but this one does not.

Both ports have the same names and meaning on every backend: the simulator implements the
controller in process (:class:`simulator.controller.ControllerModel`), the real backends call the
controller's admin API (:class:`eden.controller.client.AdminClient`), which stays up while the
device-facing side is down (a ``controller_outage``): admin changes made during an outage are
served once devices can reach the controller again.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, NotRequired, TypedDict

from eden.errors import InfrastructureError


class PartitionInfo(TypedDict):
    """One ``sw`` entry of a device report: a partition (current first, then the other)."""

    partition: str
    version: str | None
    image: str | None
    state: str
    err: str


class BaseOsInfo(TypedDict):
    """A device report's ``baseos``: the status of the base OS the controller asked for."""

    version: str | None
    image: str | None
    status: str
    sub_status: str
    err: str
    progress: int


class AppInfo(TypedDict):
    """One app instance of a device report's ``apps``."""

    state: str
    err: str
    adapters: NotRequired[list[str]]
    """The phylabels it holds (assignedAdapters), when it holds any; the simulator reports them."""


class DeviceInfo(TypedDict, total=False):
    """The latest device info the controller received: what ``eve.node.Node.report()`` sends
    (as :func:`eden.wire.codec.merge_info` decodes it on the real backends, which leave the lossy
    fields out). A device that never reported has none of these keys."""

    at: float
    state: str
    boot_reason: str
    reboot_reason_text: str
    boot_time: float | None
    restart_counter: int
    sw: list[PartitionInfo]
    baseos: BaseOsInfo
    attestation: str
    maintenance: list[str]
    vault: str | None
    dpc_index: int
    dpc_state: str
    dpc_ports: list[str]
    reboot_counter: int
    shutdown_counter: int
    baseos_update_counter: int
    apps: dict[str, AppInfo]
    config_items_errors: list[str]


class DeviceView(DeviceInfo):
    """One device's view (see :mod:`eden.conditions`): its latest info plus what the controller
    and the harness know of it."""

    id: str
    reported: bool
    """The controller has received info from the device (else none of :class:`DeviceInfo`'s keys)."""
    onboarded: bool
    connected: bool
    last_seen: float
    bricked: bool
    powered: bool


class RequestStats(TypedDict):
    """Requests of one kind (or ``all``) the controller served: counts and latency in seconds."""

    requests: int
    rejected_503: int
    status: dict[str, int]
    """HTTP status answered (``"200"``, ``"304"``, ``"503"`` …) -> requests; sums to ``requests``."""
    p50: NotRequired[float]
    p95: NotRequired[float]
    p99: NotRequired[float]
    max: NotRequired[float]
    mean: NotRequired[float]


ControllerStats = dict[str, RequestStats]
"""Per request kind, plus ``all``."""


class _Port:
    capabilities: ClassVar[frozenset[str]] = frozenset()
    refusals: ClassVar[Mapping[str, str]] = {}
    backend_name: ClassVar[str] = "this"

    def _refuse(self, method: str) -> InfrastructureError:
        return InfrastructureError(f"the {self.backend_name} backend cannot perform '{method}'")


class ControllerPort(_Port):
    """The controller as the harness drives it: desired state per device, faults, and what it sees."""

    def set_items(self, devices: list[str], items: dict[str, Any], *, everyone: bool) -> None:
        """Set configItems; ``everyone``: the whole fleet, as controller-wide items."""
        raise self._refuse("set_items")

    def set_baseos(self, devices: list[str], image: str, version: str, activate: bool) -> None:
        raise self._refuse("set_baseos")

    def retry_update(self, devices: list[str]) -> None:
        """Raise the base-OS retry counter: a device that gave up on the update tries again."""
        raise self._refuse("retry_update")

    def reboot(self, devices: list[str]) -> None:
        raise self._refuse("reboot")

    def shutdown(self, devices: list[str]) -> None:
        """Raise the DeviceOpsCmd shutdown counter: the device halts its apps and stays up (spec §1, §7)."""
        raise self._refuse("shutdown")

    def delete_device(self, devices: list[str], recreate: str) -> None:
        """Delete the devices' records; ``recreate`` none, onboarding or cert (see
        :class:`eden.scenario.model.DeleteDeviceArgs`)."""
        raise self._refuse("delete_device")

    def force_fallback(self, devices: list[str]) -> None:
        """Raise ``force.fallback.counter``: the device boots its other partition (spec §3)."""
        raise self._refuse("force_fallback")

    def set_app(self, devices: list[str], name: str, spec: dict[str, Any] | None) -> None:
        """Deploy (``spec``) or remove (None) an app instance."""
        raise self._refuse("set_app")

    def set_network(self, devices: list[str], mgmt: list[str], broken: bool) -> None:
        raise self._refuse("set_network")

    def set_maintenance(self, devices: list[str], enable: bool) -> None:
        raise self._refuse("set_maintenance")

    def refuse_certs(self, devices: list[str], enable: bool) -> None:
        """Refuse (``enable``) the devices' ATTEST_REQ_CERT posts, or accept them again (spec §5)."""
        raise self._refuse("refuse_certs")

    def revoke_token(self, devices: list[str]) -> None:
        """Ask for a fresh attestation: the old integrity token is refused from now on."""
        raise self._refuse("revoke_token")

    def outage(self) -> None:
        """Devices cannot reach the controller until :meth:`restore`."""
        raise self._refuse("outage")

    def answer_503(self) -> None:
        """Devices reach the controller but every request is answered 503 until :meth:`restore`."""
        raise self._refuse("answer_503")

    def hang(self) -> None:
        """Devices connect to the controller but no request gets an answer until :meth:`restore`
        (a stuck controller or load balancer): each one gives up after its timeouts (spec §1)."""
        raise self._refuse("hang")

    def restore(self) -> None:
        """End an outage, 503 or hang period."""
        raise self._refuse("restore")

    def views(self) -> Mapping[str, DeviceView]:
        """The device views, keyed by device id."""
        raise self._refuse("views")

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        """Devices whose view changed after sequence ``since``: (new sequence, ids or None = all)."""
        raise self._refuse("changes")

    def stats(self) -> ControllerStats:
        """Request counts and latency percentiles per request kind, plus ``all``."""
        raise self._refuse("stats")


class DevicePort(_Port):
    """The devices' hardware as the harness drives it: power, links, disk, agents."""

    def power_on(self, devices: list[str], spread: float) -> None:
        """Power each device on after a random delay in ``[0, spread)`` seconds."""
        raise self._refuse("power_on")

    def power_off(self, devices: list[str]) -> None:
        raise self._refuse("power_off")

    def power_cycle(self, devices: list[str], off_for: float) -> None:
        raise self._refuse("power_cycle")

    def graceful_poweroff(self, devices: list[str]) -> None:
        """A local power-off command (the local profile server's COMMAND_GRACEFUL_POWEROFF, spec §7):
        the device halts its apps, records POWEROFF_CMD and powers itself off."""
        raise self._refuse("graceful_poweroff")

    def set_links(self, devices: list[str], ports: list[str] | None, up: bool) -> None:
        """Cut or restore the named network ports (None: every port of the device)."""
        raise self._refuse("set_links")

    def tamper(self, devices: list[str], stage: str) -> None:
        """Change what the device measures at ``stage`` of its next boot."""
        raise self._refuse("tamper")

    def hang(self, devices: list[str], agent: str) -> None:
        """Make one of the device's agents stop making progress."""
        raise self._refuse("hang")

    def crash(self, devices: list[str], kind: str, agent: str) -> None:
        """Make a running device's agents die: ``kind`` kernel (a panic), oom, fatal or agent_exit."""
        raise self._refuse("crash")

    def low_disk_space(self, devices: list[str], enable: bool) -> None:
        """volumemgr reports no space left (``enable``) or space again: maintenance LOW_DISK_SPACE."""
        raise self._refuse("low_disk_space")

    def tpm_failure(self, devices: list[str], enable: bool) -> None:
        """tpmmgr's sanity check fails (``enable``) or passes again: maintenance TPM_ENCRYPTION_FAILURE."""
        raise self._refuse("tpm_failure")


CONTROLLER_METHODS = frozenset(
    {"set_items", "set_baseos", "retry_update", "reboot", "shutdown", "delete_device", "refuse_certs", "force_fallback", "set_app",
     "set_network",
     "set_maintenance", "revoke_token", "outage", "answer_503", "hang", "restore"}
)
DEVICE_METHODS = frozenset({"power_on", "power_off", "power_cycle", "graceful_poweroff", "set_links", "tamper", "hang",
                            "crash", "low_disk_space", "tpm_failure"})
