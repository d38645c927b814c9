"""Pure models of EVE-OS behaviour (enums, config items, zboot, measured boot)."""
