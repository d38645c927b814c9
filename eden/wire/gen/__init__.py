"""Generated protobuf modules for the EVE API v2 subset. DO NOT EDIT.

Regenerate with ``scripts/gen-protos`` from the sources in ``proto/``.
"""
