"""Backends run a scenario on something: the simulator, emulated devices, QEMU VMs or boards."""

from eden.backends.base import BACKENDS, Backend, backend_capabilities

__all__ = ["BACKENDS", "Backend", "backend_capabilities"]
