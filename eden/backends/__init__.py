"""Backends run a scenario on something: the simulator, emulated devices, QEMU VMs or boards.

A backend is a clock plus a controller port and a device port (:mod:`eden.backends.ports`); the
scenario actions reach them through one table (:mod:`eden.backends.actions`); the known backends
are listed once (:mod:`eden.backends.registry`).
"""
