"""The real EVE API v2 controller (``eden controller ...``).

The API rules are :class:`eve.controller.Controller`'s; this package puts them behind
HTTPS (:mod:`.server`), signs and verifies AuthContainers, keeps state in SQLite (:mod:`.store`)
and exposes an admin HTTP API (:mod:`.admin`, client in :mod:`.client`).
"""
