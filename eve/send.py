"""How long a request to the controller takes when it gets no answer (spec §1 "Config polling").

EVE sends every request through ``SendOnAllIntf`` (P:controllerconn/send.go): it tries the
management ports in turn, cheapest first, and stops at the first port that gets an HTTP answer.
Three limits bound the wait, all from config items (§6.1):

* each port's TCP connect gives up after ``timer.dial.timeout`` (10 s; ``DialerWithSrcIP``);
* each port's whole exchange gives up after ``timer.send.timeout`` (120 s; ``http.Client.Timeout``);
* the whole request, over every port, gives up after min(3 x ``timer.send.timeout``, 240 s)
  (``GetContextForAllIntfFunctions``; a send timeout of 0 gives the 240 s cap).

A port without an address, or whose link is not up, fails at once without sending anything
(``verifyIntfState``). So a request costs, before any answer:

========================================  ===============================================
nothing reachable on a port (dead path)   ``dial`` per port tried
the controller accepts but never answers  ``send`` per port tried (a hung connection)
no address / link not up                  0 s
========================================  ===============================================

and never more than the cap. The failure time matters beyond the request itself: nodeagent counts
the fallback and disconnect timers from the first *failed* poll's result (§3 step 7, §9), so a
hung controller delays a fallback by up to four minutes on a device with several uplinks.

Go's zero timeouts mean "none": a dial timeout of 0 leaves the connect to the send timeout, and a
send timeout of 0 leaves each port to the request's 240 s cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

MAX_WAIT = 240.0
"""P:controllerconn/send.go ``MaxWaitForRequests`` (4 min): the cap over every port."""
DIAL_TIMEOUT = 10.0
"""The default of ``timer.dial.timeout`` (§6.1)."""
SEND_TIMEOUT = 120.0
"""The default of ``timer.send.timeout`` (§6.1)."""

class Items(Protocol):
    """What is read of a node's config items (:class:`eve.config_items.GlobalConfig`, or a dict)."""

    def get(self, key: str) -> object: ...


Failure = Literal["dial", "hung"]
"""How a port fails without an answer: nothing answers the connect, or nothing answers the request."""


@dataclass(frozen=True, slots=True)
class SendTimeouts:
    """The three limits of one request, from the device's config items."""

    dial: float = DIAL_TIMEOUT
    send: float = SEND_TIMEOUT

    @classmethod
    def from_items(cls, items: Items) -> "SendTimeouts":
        """From a node's config items (absent keys are EVE's defaults)."""
        return cls(dial=_seconds(items.get("timer.dial.timeout"), DIAL_TIMEOUT),
                   send=_seconds(items.get("timer.send.timeout"), SEND_TIMEOUT))

    @property
    def cap(self) -> float:
        """The whole request's limit, over every port: min(3 x send, 240 s); 240 s when send is 0."""
        return MAX_WAIT if self.send <= 0 else min(3.0 * self.send, MAX_WAIT)

    @property
    def per_port(self) -> float:
        """One port's exchange limit (the send timeout; the cap when that is 0, i.e. none)."""
        return self.cap if self.send <= 0 else min(self.send, self.cap)

    def port_failure(self, how: Failure) -> float:
        """Seconds one port takes to fail: a dead path on the connect, a hung one on the send."""
        if how == "hung" or self.dial <= 0:
            return self.per_port
        return min(self.dial, self.per_port)

    def failing(self, ports: int, how: Failure) -> float:
        """Seconds until a request that fails on every one of ``ports`` ports gives up (0 for none:
        no port to try is an error at once)."""
        return min(self.cap, ports * self.port_failure(how)) if ports > 0 else 0.0


def _seconds(value: object, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
