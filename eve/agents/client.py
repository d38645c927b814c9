"""EVE's client (device-steps.sh runs ``client selfRegister getUuid`` on every boot): onboarding
(spec §1; P:cmd/client/client.go ``Run``, ``tryRegister``, ``selfRegister``, ``doGetUUID``).

One process per boot: what it got (the controller's certs) stays got for that boot only. A cached
UUID lets zedagent start after 5 s when the network is not up yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eve.agents.base import Agent
from eve.enums import (
    DPCState,
)
from eve.vocab import Timer

if TYPE_CHECKING:
    from eve.node import Node

ONBOARD_BACKOFF_START = 1.0  # §1 onboarding: 1 s doubling ...
ONBOARD_BACKOFF_CAP = 600.0  # ... to a 600 s cap, no jitter
ONBOARD_FAST_PATH = 5.0  # §1: cached UUID, DPC not Success at t=5 s -> done without the controller


class Client(Agent):
    """EVE's client for one boot: certs, register, uuid, with its back-off."""

    __slots__ = ("onboarding", "_got_certs", "_backoff")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.onboarding = False
        self._got_certs = False
        self._backoff = ONBOARD_BACKOFF_START

    # ------------------------------------------------------------------------------- onboarding --
    def start(self, now: float) -> None:
        """device-steps.sh runs ``client selfRegister getUuid`` on every boot (§1)."""
        self.onboarding = True
        self._backoff = ONBOARD_BACKOFF_START
        # EVE's client is one process per boot: what it got stays got for this boot only.
        self._got_certs = False
        self._attempt(now)
        if self.node.onboarded:
            self._timer(Timer.ONBOARD_FAST, now + ONBOARD_FAST_PATH)

    def _attempt(self, now: float) -> None:
        """One attempt of ``tryRegister`` in P:cmd/client/client.go ``Run`` (§1 Onboarding):
        ``certs`` only until the first success of the boot, then ``register`` on every attempt
        (``selfRegister`` reports not-done for every HTTP answer, 200/201 included, so
        ``gotRegister`` is never set), then ``uuid``; a failed ``uuid`` is posted a second time at
        once. So every failed attempt is register + uuid + uuid."""
        if not self._got_certs:
            self._send("certs", {}, now)
        else:
            self._send("register", {"serial": self.p.serial, "cert": f"device-cert-{self.p.serial}"}, now)

    def _failed(self, now: float) -> None:
        self._timer(Timer.ONBOARD, now + self._backoff)
        self._backoff = min(self._backoff * 2, ONBOARD_BACKOFF_CAP)

    def on_answer(self, kind: str, status: int, body: dict[str, Any], now: float, ctx: Any = None) -> None:
        if not self.onboarding:
            return
        if kind == "certs":
            if status == 200:
                self._got_certs = True
                self._attempt(now)
            else:
                self._failed(now)
        elif kind == "register":
            if status not in (200, 201):
                self._note("register_refused", status=status)
            # §1 selfRegister: the answer only sets the LED (200/201 onboarded, 409 conflict, 403
            # not found, …); uuid is tried whatever it was, so a refused device still onboards.
            self._send("uuid", {}, now, ctx=1)
        elif kind == "uuid":
            if status in (200, 201):
                first = not self.node.onboarded
                self.persist.uuid = body.get("uuid", self.p.device_id)
                self.onboarding = False
                if first:
                    self._note("onboarded", uuid=self.persist.uuid)
                self.node.zedagent.start(now)
            elif ctx == 1:
                self._send("uuid", {}, now, ctx=2)  # §1: a failed uuid is posted a second time at once
            else:
                self._failed(now)

    def on_timer(self, now: float) -> None:
        if self.onboarding:
            self._attempt(now)

    def on_fast_timer(self, now: float) -> None:
        if self.onboarding and self.node.onboarded and self.node.nim.dpc_state != DPCState.SUCCESS:
            self.onboarding = False  # cached UUID: done without the controller (§1)
            self.node.zedagent.start(now)
