"""The contract between a node and the loop that drives it, written once for every clock.

A :class:`eve.node.Node` does no I/O: each input (``power_on``, ``on_timer``, ``on_response``, ...)
returns a list of actions, and a driver carries them out on its clock. Three drivers exist — the
SimPy engine (simulated time, a whole fleet), the asyncio agent (real time, one device) and the
tests' heap — and all of them keep the same four rules:

1. A timer is known by its name (:data:`eve.vocab.TimerName`). Setting a name again moves it: the
   earlier setting must not fire.
2. ``CancelAll`` drops every timer *and* every answer to a request sent before it. A power cut or a
   hardware reset leaves nothing in flight.
3. A timer fires at its time or later, never earlier, and the node is told when it fired
   (``max(at, now)``).
4. ``Reset`` ends the boot: the node is powered on again (after the actions already returned).

:class:`TimerBook` keeps rules 1 and 2 for one node with tokens and a generation; :func:`dispatch`
hands each action to the driver's :class:`ActionSink`. A driver then supplies only "call me back at
``t``" for its clock::

    def set_timer(self, name, at):
        token = self.book.set(name)
        gen = self.book.gen
        clock.call_at(at, lambda: self.book.take(name, token, gen) and self.fire(name, at))
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol

from eve.enums import BootReason
from eve.node import Action, CancelAll, Note, Reset, Send, SetTimer
from eve.vocab import TimerName


class TimerBook:
    """Which setting of each timer of one node is the current one (rules 1 and 2).

    ``set`` gives a token for the new setting; ``take`` says whether a firing setting is still
    current (and forgets it); ``cancel_all`` forgets every timer and starts a new generation, which
    a driver also tags its requests with so that an answer from before is dropped.
    """

    __slots__ = ("gen", "_tokens", "_seq")

    def __init__(self) -> None:
        self.gen = 0
        self._tokens: dict[TimerName, int] = {}
        self._seq = 0

    def set(self, name: TimerName) -> int:
        self._seq += 1
        self._tokens[name] = self._seq
        return self._seq

    def take(self, name: TimerName, token: int, gen: int) -> bool:
        """True once for the current setting of ``name`` in generation ``gen``; it is then forgotten."""
        if gen != self.gen or self._tokens.get(name) != token:
            return False
        del self._tokens[name]
        return True

    def cancel_all(self) -> None:
        self.gen += 1
        self._tokens.clear()

    def pending(self) -> frozenset[TimerName]:
        """The timers set and not yet fired or cancelled."""
        return frozenset(self._tokens)


class ActionSink(Protocol):
    """What a driver does with each kind of action (see the module docstring for the rules)."""

    def send(self, req: Send) -> None: ...

    def set_timer(self, name: TimerName, at: float) -> None: ...

    def note(self, what: str, data: Mapping[str, Any]) -> None: ...

    def cancel_all(self) -> None: ...

    def reset(self, reason: BootReason | None) -> None: ...


def dispatch(actions: Iterable[Action], sink: ActionSink) -> None:
    """Hand each action to ``sink`` in the order the node returned them."""
    for a in actions:
        if isinstance(a, SetTimer):
            sink.set_timer(a.name, a.at)
        elif isinstance(a, Send):
            sink.send(a)
        elif isinstance(a, Note):
            sink.note(a.what, a.data)
        elif isinstance(a, CancelAll):
            sink.cancel_all()
        elif isinstance(a, Reset):
            sink.reset(a.reason)
        else:
            raise TypeError(f"not a node action: {a!r}")
