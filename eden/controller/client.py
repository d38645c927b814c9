"""A small synchronous admin API client (stdlib urllib only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from eden.controller.layout import Layout


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"admin API {status}: {message}")
        self.status = status


class AdminClient:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def for_dir(cls, root: Path) -> "AdminClient":
        """From a running controller's DIR/serve.json and DIR/admin.token."""
        layout = Layout(root)
        info = json.loads(layout.serve_json.read_text())
        return cls(info["admin_url"], layout.read_token())

    def request(self, method: str, path: str, body: Any = None, *, timeout: float | None = None, raw: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise AdminError(exc.code, detail) from None
        if raw:
            return text
        return json.loads(text) if text else None

    def _dev(self, serial: str) -> str:
        return "/v1/devices/" + urllib.parse.quote(serial, safe="")

    # ------------------------------------------------------------------------- calls --
    def preregister(self, serial: str, *, firmware: str = "", images: dict[str, dict[str, str]] | None = None,
                    config: dict[str, Any] | None = None, learn: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"serial": serial, "firmware": firmware, "images": images or {}, "learn": learn}
        if config is not None:
            body["config"] = config
        return self.request("POST", "/v1/devices", body)

    def preregister_many(self, devices: list[dict[str, Any]]) -> dict[str, int]:
        """Pre-register many devices in one transaction: entries as for :meth:`preregister`."""
        return self.request("POST", "/v1/bulk/devices", {"devices": devices})

    def devices(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/devices")

    def device(self, serial: str) -> dict[str, Any]:
        return self.request("GET", self._dev(serial))

    def set_items(self, items: dict[str, Any], serial: str | None = None) -> Any:
        path = self._dev(serial) + "/items" if serial else "/v1/items"
        return self.request("PUT", path, {"items": items})

    def set_baseos(self, serial: str, image: str, version: str, activate: bool = True) -> Any:
        return self.request("PUT", self._dev(serial) + "/baseos", {"image": image, "version": version, "activate": activate})

    def retry_update(self, serial: str) -> Any:
        return self.request("POST", self._dev(serial) + "/baseos/retry", {})

    def reboot(self, serial: str) -> Any:
        return self.request("POST", self._dev(serial) + "/reboot", {})

    def shutdown(self, serial: str) -> Any:
        return self.request("POST", self._dev(serial) + "/shutdown", {})

    def set_app(self, serial: str, name: str, spec: dict[str, Any] | None) -> Any:
        path = self._dev(serial) + "/apps/" + urllib.parse.quote(name, safe="")
        return self.request("DELETE", path) if spec is None else self.request("PUT", path, spec)

    def set_maintenance(self, serial: str, enable: bool) -> Any:
        return self.request("PUT", self._dev(serial) + "/maintenance", {"enable": enable})

    def set_device_learn(self, serial: str, learn: bool) -> Any:
        return self.request("PUT", self._dev(serial) + "/learn", {"learn": learn})

    def set_learn(self, learn: bool) -> Any:
        return self.request("PUT", "/v1/settings/learn", {"learn": learn})

    def revoke_token(self, serial: str) -> Any:
        return self.request("POST", self._dev(serial) + "/attestation/revoke", {})

    def templates(self, status: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/templates" + (f"?status={status}" if status else ""))

    def approve(self, template_id: int) -> dict[str, Any]:
        return self.request("POST", f"/v1/templates/{template_id}/approve", {})

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/v1/stats")

    def wait_event(self, kind: str, serial: str | None = None, *, since: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """The first event of ``kind`` (for ``serial``, if given) after ``since``; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} event for {serial!r} within {timeout} s")
            for event in self.events(since, wait=min(left, 30.0)):
                since = event["id"]
                if event["kind"] == kind and (serial is None or event["serial"] == serial):
                    return event

    def events(self, since: int = 0, wait: float = 0.0) -> list[dict[str, Any]]:
        text = self.request("GET", f"/v1/events?since={since}&wait={wait}", timeout=wait + self.timeout, raw=True)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
