"""The device agent: one emulated EVE device on the simulator's node model, in real time (docs/agent.md)."""
