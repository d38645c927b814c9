"""What EVE's onboarding client puts on the wire for the node's certs -> register -> uuid chain.

The node model (simulator/eve/node.py) retries the whole chain and goes on to ``uuid`` only after
a register 200/201. EVE's client (P:cmd/client/client.go ``tryRegister``, spec §2.1 table and
§2.2) differs on the wire, and this per-boot filter makes the agent do what EVE does:

* ``certs`` is fetched until the first success of the boot, then not again (``gotServerCerts``);
* ``register`` is sent until it succeeds once in the boot (``gotRegister``); its result only
  drives the LED, so the node is told to go on to ``uuid`` whatever the answer (a refusal is
  still reported as the node's ``register_refused`` event);
* after a failed register ``uuid`` is posted twice (once in the register branch, once more when
  that failed); a 201 to ``uuid`` is as good as a 200.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping

Answer = tuple[int, dict[str, Any]]
Emit = Callable[[str, Mapping[str, Any]], None]


class OnboardWire:
    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.got_certs = False
        self.registered = False
        self._register_failed = False

    async def exchange(self, kind: str, do: Callable[[], Awaitable[Answer]]) -> Answer:
        """Answer one node request of kind certs/register/uuid; ``do`` performs it on the wire."""
        if kind == "certs":
            if self.got_certs:
                return 200, {}  # fetched this boot already; the node needs no new answer
            status, body = await do()
            self.got_certs = status == 200
            return status, body
        if kind == "register":
            if self.registered:
                return 200, {}
            status, body = await do()
            if status in (200, 201):
                self.registered, self._register_failed = True, False
                return status, body
            self._register_failed = True
            self.emit("register_refused", {"status": status, **({"error": body["error"]} if "error" in body else {})})
            return 200, {}  # the result is ignored: uuid is tried regardless
        if kind == "uuid":
            status, body = await do()
            if status not in (200, 201) and self._register_failed:
                status, body = await do()
            self._register_failed = False
            return (200 if status == 201 else status), body
        return await do()
