"""``eden emulate``: a fleet of emulated EVE devices in one process (load and scale testing)."""
