"""Phase transitions as tables.

An agent whose work goes through phases writes them down as a :class:`Transitions` table: for each
(phase, event) pair it expects, the phase that follows, or :data:`STAY` where the event is expected
and changes nothing (a power button pressed on a running device, a stale timer). The agent then
moves only through :meth:`Transitions.fire`; it never assigns a phase itself.

A pair that is not in the table is a bug in the model, never bad input: ``fire`` raises
:class:`TransitionError`. EVE's attest agent is built this way (P:attest/attest.go ``transitions``
and ``despatchEvent``, which calls log.Fatal on an unexpected event), and so is h11's connection
state machine. The effect is that a rule nobody wrote is a loud failure in the first test that
reaches it, not a silent no-op found months later in a fleet report. Answers from the network are
checked before they become events (a stale or unexpected answer is dropped by the agent, with the
reason in its code), so a hostile controller cannot reach a missing pair.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Final, Generic, TypeVar

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


class TransitionError(RuntimeError):
    """An event arrived in a phase whose table has no entry for it: a missing rule."""


class _Stay:
    __slots__ = ()

    def __repr__(self) -> str:
        return "STAY"


STAY: Final = _Stay()
"""The table's entry for an event that is expected in a phase and leaves it as it is."""


class Transitions(Generic[S, E]):
    """One agent's (phase, event) -> phase table."""

    def __init__(self, name: str, table: Mapping[tuple[S, E], S | _Stay]) -> None:
        self.name = name
        self._table = dict(table)

    def fire(self, phase: S, event: E) -> S:
        """The phase after ``event`` in ``phase``; raises :class:`TransitionError` for a missing pair."""
        try:
            nxt = self._table[(phase, event)]
        except KeyError:
            raise TransitionError(f"{self.name}: no transition for event {event.name} in phase {phase.name}") from None
        return phase if isinstance(nxt, _Stay) else nxt

    def allows(self, phase: S, event: E) -> bool:
        return (phase, event) in self._table

    def moves(self, phase: S, event: E) -> bool:
        """True when ``event`` in ``phase`` is in the table and changes the phase."""
        nxt = self._table.get((phase, event))
        return nxt is not None and not isinstance(nxt, _Stay) and nxt != phase

    def __iter__(self) -> Iterator[tuple[S, E, S | _Stay]]:
        for (phase, event), nxt in self._table.items():
            yield phase, event, nxt

    def __len__(self) -> int:
        return len(self._table)
