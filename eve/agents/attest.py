"""The attestation FSM and the vault (spec §5; P:attest/attest.go, P:cmd/zedagent/attesttask.go,
P:cmd/vaultmgr/).

NONCE -> TPM quote -> the controller's verdict -> STORE_KEYS escrow -> COMPLETE, with a fixed 15 s
retry from RESTART_WAIT. The phases move only through :data:`ATTEST_FSM`, EVE's own table. The
vault unseals at boot when the PCRs match its sealing policy, else only after a good quote returns
the escrowed key.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from eve.agents.base import Agent
from eve.enums import (
    AttestState,
    MaintenanceModeReason,
    QuoteResponseCode,
)
from eve.fsm import STAY, Transitions
from eve.measured_boot import seal_digest
from eve.vocab import Timer

if TYPE_CHECKING:
    from eve.node import Node

ATTEST_RETRY = 15.0  # §5: fixed 15 s retry


class AttestEvent(StrEnum):
    """What moves the attestation FSM (§5; EVE's events in P:attest/attest.go, where it has one)."""

    START = "start"  # zedagent starts (EventInitialize)
    RETRY_TIMER = "retry timer"  # the fixed 15 s in RESTART_WAIT ran out (EventRetryTimerExpiry)
    NONCE_RECVD = "nonce received"  # EventNonceRecvd
    QUOTE_READY = "quote ready"  # tpmmgr produced the quote (EventInternalQuoteRecvd)
    QUOTE_ACCEPTED = "quote accepted"  # EventAttestSuccessful: the vault key goes to escrow next
    QUOTE_ACCEPTED_NO_TPM = "quote accepted, no TPM"  # nothing to escrow: attested at once
    QUOTE_REFUSED = "quote refused"  # EventNonceMismatch, EventQuoteMismatch, EventNoQuoteCertRecvd
    ESCROW_RECORDED = "escrow recorded"  # EventAttestEscrowRecorded
    ESCROW_FAILED = "escrow failed"  # EventAttestEscrowFailed
    REQUEST_FAILED = "request failed"  # no 2xx answer to the request in flight
    RESTART = "restart"  # a config 403 after a quote, or one remembered during the cycle (EventRestart)


_W = AttestState
_E = AttestEvent
ATTEST_FSM: Transitions[AttestState, AttestEvent] = Transitions("attest", {
    (_W.UNSPECIFIED, _E.START): _W.NONCE_WAIT,
    (_W.RESTART_WAIT, _E.RETRY_TIMER): _W.NONCE_WAIT,
    (_W.NONCE_WAIT, _E.NONCE_RECVD): _W.TPM_QUOTE_WAIT,
    (_W.TPM_QUOTE_WAIT, _E.QUOTE_READY): _W.ATTEST_WAIT,
    (_W.ATTEST_WAIT, _E.QUOTE_ACCEPTED): _W.ATTEST_ESCROW_WAIT,
    (_W.ATTEST_WAIT, _E.QUOTE_ACCEPTED_NO_TPM): _W.COMPLETE,
    (_W.ATTEST_WAIT, _E.QUOTE_REFUSED): _W.RESTART_WAIT,
    (_W.ATTEST_ESCROW_WAIT, _E.ESCROW_RECORDED): _W.COMPLETE,
    (_W.ATTEST_ESCROW_WAIT, _E.ESCROW_FAILED): _W.RESTART_WAIT,
    **{(w, _E.REQUEST_FAILED): _W.RESTART_WAIT for w in (_W.NONCE_WAIT, _W.ATTEST_WAIT, _W.ATTEST_ESCROW_WAIT)},
    (_W.COMPLETE, _E.RESTART): _W.RESTART_WAIT,
    (_W.RESTART_WAIT, _E.RESTART): STAY,  # dropped: the retry timer's expiry clears the flag
    # remembered (restartRequestPending) and run after the cycle's COMPLETE:
    **{(w, _E.RESTART): STAY for w in (_W.NONCE_WAIT, _W.TPM_QUOTE_WAIT, _W.ATTEST_WAIT, _W.ATTEST_ESCROW_WAIT)},
})
"""The attestation FSM (§5, P:attest/attest.go ``transitions``). EVE's INTERNAL_QUOTE_WAIT and
INTERNAL_ESCROW_WAIT (tpmmgr's side) are folded into TPM_QUOTE_WAIT and the escrow request."""


class Attest(Agent):
    """The attestation FSM and the vault of one boot."""

    __slots__ = ("vault_unlocked", "vault_at", "state", "token", "quote_sent", "_nonce", "_pending", "_queued_cycle")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.vault_unlocked = False
        self.vault_at: float | None = None
        self.state = AttestState.UNSPECIFIED
        self.token: str | None = None
        self.quote_sent = False
        self._nonce: str | None = None
        self._pending = False  # a restart asked for while a cycle ran (§5 restartRequestPending)
        self._queued_cycle = False  # the running cycle is that queued one: it queues no other

    # ------------------------------------------------------------------------------ attestation --
    def unseal(self, now: float) -> None:
        """At boot (§5): the vault unseals locally when the PCRs match its sealing policy; the first
        boot with a TPM creates the key and seals it. Without a TPM there is nothing to unseal."""
        ps = self.persist
        self.vault_at = now
        if not self.p.tpm:
            self.vault_unlocked = True
        elif ps.seal is None:
            ps.vault_key = f"vault-{self.p.serial}"
            ps.seal = seal_digest(self.node.pcrs)
            self.vault_unlocked = True
        else:
            self.vault_unlocked = ps.seal == seal_digest(self.node.pcrs)

    def start(self, now: float) -> None:
        """§5 FSM (:data:`ATTEST_FSM`): NONCE -> QUOTE -> (escrow) -> COMPLETE; errors ->
        RESTART_WAIT, fixed 15 s."""
        self._fire(AttestEvent.START if self.state == AttestState.UNSPECIFIED else AttestEvent.RETRY_TIMER)
        self._pending = False  # §5 handleRetryTimerExpiryAtRestartWait clears the flag
        self._send("attest", {"type": "NONCE"}, now)

    def restart_requested(self, sent_token: str | None, now: float) -> None:
        """A config 403 after a quote was sent (§1, §5; P:cmd/zedagent/handleconfig.go
        ``getLatestConfig``, P:attest/attest.go ``handleRestart``, ``handleRestartAtStateComplete``).

        As EVE: at COMPLETE the FSM goes to RESTART_WAIT and starts over after 15 s; while a cycle
        runs the request is remembered (one flag) and runs 15 s after that cycle's COMPLETE; in
        RESTART_WAIT it is dropped (the timer's expiry clears the flag).

        Bounded, unlike EVE, so that the token-replacement livelock cannot happen: a 403 for a
        config sent with a token the device no longer holds answers a token already replaced and
        asks for nothing, and the cycle the queue started queues no other. Without this, configs
        sent with the old token while a new one is issued (a slow link) get 403 in every cycle and
        each cycle would queue the next one forever."""
        if sent_token != self.token:
            return  # stale: that token was replaced after the config was sent
        if self.state == AttestState.COMPLETE:
            self._queued_cycle = False
            self._note("attest_restart", why="config 403")
            self._restart_wait(AttestEvent.RESTART, now)
            return
        was = self.state
        self._fire(AttestEvent.RESTART)  # STAY: dropped in RESTART_WAIT, else remembered
        if was != AttestState.RESTART_WAIT and not self._queued_cycle:
            self._pending = True

    def _complete(self, event: AttestEvent, now: float) -> None:
        """COMPLETE; a restart remembered during the cycle runs 15 s later (§5,
        ``handleAttestEscrowRecordedAtAttestEscrowWait``)."""
        self._fire(event)
        self._note("attested")
        if self._pending:
            self._pending = False
            self._queued_cycle = True
            self._note("attest_restart", why="queued during the last cycle")
            self._restart_wait(AttestEvent.RESTART, now)
        else:
            self._queued_cycle = False

    def _fire(self, event: AttestEvent) -> None:
        self.state = ATTEST_FSM.fire(self.state, event)

    def _restart_wait(self, event: AttestEvent, now: float) -> None:
        self._fire(event)
        self._timer(Timer.ATTEST, now + ATTEST_RETRY)

    def on_answer(self, status: int, body: dict[str, Any], now: float) -> None:
        """The answer to the FSM's request in flight (one at a time). An answer of another type
        than the request's is dropped before it reaches the table (the FSM then waits, as before)."""
        if status not in (200, 201):
            self._restart_wait(AttestEvent.REQUEST_FAILED, now)
            return
        resp = body.get("type")
        if resp == "NONCE" and self.state == AttestState.NONCE_WAIT:
            self._nonce = body.get("nonce")
            self._fire(AttestEvent.NONCE_RECVD)
            self._timer(Timer.QUOTE, now + (1.0 if self.p.tpm else 0.05))  # tpmmgr produces the quote
        elif resp == "QUOTE" and self.state == AttestState.ATTEST_WAIT:
            code = QuoteResponseCode[body.get("code", "QUOTE_FAILED")]
            if code != QuoteResponseCode.SUCCESS:
                self._note("attest_failed", code=code.name, pcrs=body.get("mismatch", []))
                self._restart_wait(AttestEvent.QUOTE_REFUSED, now)
                self.node.zedagent.publish(now)
                return
            self.token = body.get("token")
            key = body.get("key")
            if not self.vault_unlocked and key and key == self.persist.vault_key:
                # The escrowed key comes back only after a good quote; re-seal to the new PCRs (§5).
                self.vault_unlocked = True
                self.persist.seal = seal_digest(self.node.pcrs)
                self._note("vault_unlocked")
                self.node.nodeagent.set_local_maintenance(MaintenanceModeReason.VAULT_LOCKED_UP, False, now)
                self._vault_ready(now)
            if self.p.tpm:
                self._fire(AttestEvent.QUOTE_ACCEPTED)
                self._send("attest", {"type": "STORE_KEYS", "token": self.token, "key": self.persist.vault_key}, now)
            else:
                self._complete(AttestEvent.QUOTE_ACCEPTED_NO_TPM, now)  # no TPM: escrow skipped (§5)
            self.node.zedagent.publish(now)
        elif resp == "STORE_KEYS" and self.state == AttestState.ATTEST_ESCROW_WAIT:
            if body.get("code") == "SUCCESS":
                self._complete(AttestEvent.ESCROW_RECORDED, now)
            else:
                self._restart_wait(AttestEvent.ESCROW_FAILED, now)
            self.node.zedagent.publish(now)

    def on_quote_timer(self, now: float) -> None:
        self._fire(AttestEvent.QUOTE_READY)
        self.quote_sent = True
        pcrs = {i: v.hex() for i, v in self.node.pcrs.items() if i < 16} if self.p.tpm else {}
        self._send("attest", {"type": "QUOTE", "nonce": self._nonce, "pcrs": pcrs, "tpm": self.p.tpm}, now)

    def _vault_ready(self, now: float) -> None:
        self.node.nodeagent.arm(now)
        if self.node.zedagent.config_received and self.persist.config is not None and not self.node.zedagent.maintenance:
            self.node.baseosmgr.apply(self.persist.config.get("baseos"), now)
            self.node.zedmanager.resume(self.persist.config, now)

    def on_retry_timer(self, now: float) -> None:
        self.start(now)
