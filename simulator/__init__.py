"""EVE-OS fleet simulator."""
