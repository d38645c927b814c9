"""The lab: places (boards with their drivers), leases and health (docs/lab.md)."""
