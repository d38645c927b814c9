"""EVE's client (device-steps.sh runs ``client selfRegister getUuid`` on every boot): onboarding
(spec §1; P:cmd/client/client.go ``Run``, ``tryRegister``, ``selfRegister``, ``doGetUUID``).

One process per boot: what it got (the controller's certs) stays got for that boot only. A cached
UUID lets zedagent start after 5 s when the network is not up yet.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from eve.agents.base import Agent
from eve.enums import (
    DPCState,
)
from eve.fsm import STAY, Transitions
from eve.vocab import Timer

if TYPE_CHECKING:
    from eve.node import Node

ONBOARD_BACKOFF_START = 1.0  # §1 onboarding: 1 s doubling ...
ONBOARD_BACKOFF_CAP = 600.0  # ... to a 600 s cap, no jitter
ONBOARD_FAST_PATH = 5.0  # §1: cached UUID, DPC not Success at t=5 s -> done without the controller


class Onboarding(StrEnum):
    """Where one boot's ``client selfRegister getUuid`` is (§1)."""

    IDLE = "idle"
    CERTS = "certs"  # GET certs in flight (until its first success in the boot)
    REGISTER = "register"
    UUID = "uuid"
    UUID_AGAIN = "uuid again"  # a failed uuid is posted a second time at once
    BACKOFF_CERTS = "backoff, then certs"
    BACKOFF = "backoff, then register"
    DONE = "done"


class OnboardEvent(StrEnum):
    START = "start"
    CERTS_OK = "certs answered"
    CERTS_FAILED = "certs failed"
    REGISTER_ANSWERED = "register answered"  # whatever the code: it only sets the LED
    UUID_OK = "uuid answered"
    UUID_FAILED = "uuid failed"
    RETRY = "retry timer"
    FAST_PATH = "fast path"  # a cached UUID and no working DPC 5 s after start: done without the controller


_O, _OE = Onboarding, OnboardEvent
_ANSWERS = (_OE.CERTS_OK, _OE.CERTS_FAILED, _OE.REGISTER_ANSWERED, _OE.UUID_OK, _OE.UUID_FAILED)
ONBOARDING: Transitions[Onboarding, OnboardEvent] = Transitions("onboarding", {
    (_O.IDLE, _OE.START): _O.CERTS,
    (_O.CERTS, _OE.CERTS_OK): _O.REGISTER,
    (_O.CERTS, _OE.CERTS_FAILED): _O.BACKOFF_CERTS,
    (_O.REGISTER, _OE.REGISTER_ANSWERED): _O.UUID,
    (_O.UUID, _OE.UUID_OK): _O.DONE,
    (_O.UUID, _OE.UUID_FAILED): _O.UUID_AGAIN,
    (_O.UUID_AGAIN, _OE.UUID_OK): _O.DONE,
    (_O.UUID_AGAIN, _OE.UUID_FAILED): _O.BACKOFF,
    (_O.BACKOFF_CERTS, _OE.RETRY): _O.CERTS,
    (_O.BACKOFF, _OE.RETRY): _O.REGISTER,
    **{(o, _OE.FAST_PATH): _O.DONE for o in (_O.CERTS, _O.REGISTER, _O.UUID, _O.UUID_AGAIN, _O.BACKOFF_CERTS, _O.BACKOFF)},
    # after the fast path: the answer to the request still in flight, and the retry timer, find nobody
    **{(_O.DONE, e): STAY for e in (*_ANSWERS, _OE.RETRY)},
})
"""P:cmd/client/client.go ``Run`` (``tryRegister``, ``selfRegister``, ``doGetUUID``), §1."""


class Client(Agent):
    """EVE's client for one boot: certs, register, uuid, with its back-off."""

    __slots__ = ("phase", "_backoff")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.phase = Onboarding.IDLE
        self._backoff = ONBOARD_BACKOFF_START

    @property
    def onboarding(self) -> bool:
        return self.phase not in (Onboarding.IDLE, Onboarding.DONE)

    def _fire(self, event: OnboardEvent) -> Onboarding:
        self.phase = ONBOARDING.fire(self.phase, event)
        return self.phase

    # ------------------------------------------------------------------------------- onboarding --
    def start(self, now: float) -> None:
        """device-steps.sh runs ``client selfRegister getUuid`` on every boot (§1). EVE's client is
        one process per boot: what it got (the certs) stays got for this boot only."""
        self._fire(OnboardEvent.START)
        self._attempt(now)
        if self.node.onboarded:
            self._timer(Timer.ONBOARD_FAST, now + ONBOARD_FAST_PATH)

    def _attempt(self, now: float) -> None:
        """One attempt of ``tryRegister`` in P:cmd/client/client.go ``Run`` (§1 Onboarding):
        ``certs`` only until the first success of the boot, then ``register`` on every attempt
        (``selfRegister`` reports not-done for every HTTP answer, 200/201 included, so
        ``gotRegister`` is never set), then ``uuid``; a failed ``uuid`` is posted a second time at
        once. So every failed attempt is register + uuid + uuid."""
        if self.phase == Onboarding.CERTS:
            self._send("certs", {}, now)
        else:
            self._send("register", {"serial": self.p.serial, "cert": f"device-cert-{self.p.serial}"}, now)

    def _back_off(self, now: float) -> None:
        """A failed attempt: the next one after the back-off, which doubles up to its cap."""
        self._timer(Timer.ONBOARD, now + self._backoff)
        self._backoff = min(self._backoff * 2, ONBOARD_BACKOFF_CAP)

    def on_answer(self, kind: str, status: int, body: dict[str, Any], now: float, ctx: Any = None) -> None:
        event = _answer_event(kind, status)
        phase = self.phase
        self._fire(event)
        if phase == Onboarding.DONE:
            return  # STAY: after the fast path nobody waits for it
        if event == OnboardEvent.CERTS_OK:
            self._attempt(now)
        elif event == OnboardEvent.REGISTER_ANSWERED:
            if status not in (200, 201):
                self._note("register_refused", status=status)
            # §1 selfRegister: the answer only sets the LED (200/201 onboarded, 409 conflict, 403
            # not found, …); uuid is tried whatever it was, so a refused device still onboards.
            self._send("uuid", {}, now)
        elif event == OnboardEvent.UUID_OK:
            first = not self.node.onboarded
            self.persist.uuid = body.get("uuid", self.p.device_id)
            if first:
                self._note("onboarded", uuid=self.persist.uuid)
            self.node.zedagent.start(now)
        elif self.phase == Onboarding.UUID_AGAIN:
            self._send("uuid", {}, now)  # §1: a failed uuid is posted a second time at once
        else:  # certs failed, or uuid failed twice
            self._back_off(now)

    def on_timer(self, now: float) -> None:
        self._fire(OnboardEvent.RETRY)
        if self.phase != Onboarding.DONE:
            self._attempt(now)

    def on_fast_timer(self, now: float) -> None:
        if self.onboarding and self.node.onboarded and self.node.nim.dpc_state != DPCState.SUCCESS:
            self._fire(OnboardEvent.FAST_PATH)  # cached UUID: done without the controller (§1)
            self.node.zedagent.start(now)


def _answer_event(kind: str, status: int) -> OnboardEvent:
    """The client's reading of an answer: certs and uuid with 200/201 (``myPost`` counts both as done;
    ``fetchCertChain``, ``doGetUUID``), register whatever it says (spec §2.1 table)."""
    if kind == "certs":
        return OnboardEvent.CERTS_OK if status in (200, 201) else OnboardEvent.CERTS_FAILED
    if kind == "register":
        return OnboardEvent.REGISTER_ANSWERED
    return OnboardEvent.UUID_OK if status in (200, 201) else OnboardEvent.UUID_FAILED
