"""The controller port of the real-time backends: the scenario's controller actions over the admin API
of the ``eden controller serve`` process (:class:`eden.controller.client.AdminClient`).

A ``controller_outage`` stops that process (devices cannot reach it); the admin changes a
scenario makes meanwhile are queued and sent, in order, to the restarted controller before devices
can reach it again, so an outage changes nothing about what the admin side accepts: the same
steps have the same effect as on the simulator, whose controller keeps accepting changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, Protocol, TypeVar

from eden.backends.ports import CONTROLLER_METHODS, ControllerPort, ControllerStats, DevicePort, DeviceView
from eden.errors import InfrastructureError

if TYPE_CHECKING:
    from eden.backends.live import LiveBackend, LiveDevice
    from eden.controller.client import AdminClient

NO_DELETE = ("its controller cannot delete a device and create it again (the admin API's revoke drops a "
             "registration but keeps the device's uuid); run this scenario on sim")
NO_LPS = "its device agent has no local profile server to take a graceful power-off command"
ADMIN_READS = frozenset({"device", "devices", "stats", "events"})


class AdminSide(Protocol):
    """What the controller port uses of a real-time backend (:class:`eden.backends.live.LiveBackend`
    of any device kind)."""

    @property
    def ids(self) -> list[str]: ...

    @property
    def devices(self) -> Mapping[str, LiveDevice]: ...

    @property
    def admin(self) -> AdminClient | None: ...

    @property
    def controller_down(self) -> bool: ...

    @property
    def pending_admin(self) -> list[tuple[str, tuple[object, ...], dict[str, object]]]: ...

    def controller_outage(self) -> None: ...

    def controller_restore(self) -> None: ...

    def view(self, device: str) -> DeviceView: ...

    def journal_changes(self, since: int) -> tuple[int, list[str] | None]: ...

    def admin_stats(self) -> ControllerStats: ...


class AdminControllerPort(ControllerPort):
    capabilities = CONTROLLER_METHODS - {"set_network", "delete_device"}
    """No network config (system adapters) goes on the wire, so ``set_network`` has no effect here.
    ``controller_503`` and ``controller_hang`` are the controller's answer switch (``PUT
    /v1/settings/answer``), ``refuse_device_certs`` its per-device cert refusal."""
    refusals = {"delete_device": NO_DELETE}
    backend_name = "emulated"

    def __init__(self, backend: AdminSide) -> None:
        self.be = backend
        self.admin = _Deferred(backend)

    def _serials(self, devices: list[str]) -> list[str]:
        return [self.be.devices[d].serial for d in devices]

    def _each(self, method: str, devices: list[str], *args: object) -> None:
        call = getattr(self.admin, method)
        for serial in self._serials(devices):
            call(serial, *args)

    def set_items(self, devices: list[str], items: dict[str, Any], *, everyone: bool) -> None:
        if everyone:
            self.admin.set_items(items)
            return
        for serial in self._serials(devices):
            self.admin.set_items(items, serial=serial)

    def set_baseos(self, devices: list[str], image: str, version: str, activate: bool) -> None:
        self._each("set_baseos", devices, image, version, activate)

    def retry_update(self, devices: list[str]) -> None:
        self._each("retry_update", devices)

    def reboot(self, devices: list[str]) -> None:
        self._each("reboot", devices)

    def shutdown(self, devices: list[str]) -> None:
        self._each("shutdown", devices)

    def force_fallback(self, devices: list[str]) -> None:
        self._each("force_fallback", devices)

    def set_app(self, devices: list[str], name: str, spec: dict[str, Any] | None) -> None:
        self._each("set_app", devices, name, spec)

    def set_maintenance(self, devices: list[str], enable: bool) -> None:
        self._each("set_maintenance", devices, enable)

    def revoke_token(self, devices: list[str]) -> None:
        self._each("revoke_token", devices)

    def refuse_certs(self, devices: list[str], enable: bool) -> None:
        self._each("refuse_certs", devices, enable)

    def outage(self) -> None:
        self.be.controller_outage()

    def answer_503(self) -> None:
        self.admin.set_answer_mode("503")

    def hang(self) -> None:
        self.admin.set_answer_mode("hang")

    def restore(self) -> None:
        """End an outage, 503 or hang period: the answer switch back to normal (queued after the
        other changes when the controller is down), then a stopped controller restarted."""
        self.admin.set_answer_mode("normal")
        self.be.controller_restore()

    def views(self) -> Mapping[str, DeviceView]:
        return {d: self.be.view(d) for d in self.be.ids}

    def changes(self, since: int) -> tuple[int, list[str] | None]:
        return self.be.journal_changes(since)

    def stats(self) -> ControllerStats:
        return self.be.admin_stats()


class _Deferred:
    """The admin client as scenario actions use it: while the controller is down (an outage
    step), changes are queued and applied in order once it is back."""

    def __init__(self, backend: AdminSide) -> None:
        self._be = backend

    def __getattr__(self, name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            be = self._be
            if be.controller_down:
                if name in ADMIN_READS:
                    raise InfrastructureError(f"admin read '{name}' while the controller is down")
                be.pending_admin.append((name, args, kwargs))
                return None
            return getattr(be.admin, name)(*args, **kwargs)

        return call


B = TypeVar("B", bound="LiveBackend[Any]")


class LiveDevicePort(DevicePort, Generic[B]):
    """A real-time backend's devices; the subclass of each backend performs the hardware actions."""

    def __init__(self, backend: B) -> None:
        self.be = backend
