"""What every agent shares: the node it runs on, its persisted state and its outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eve.actions import Note, SetTimer
from eve.vocab import TimerName

if TYPE_CHECKING:
    import numpy as np

    from eve.config_items import GlobalConfig
    from eve.node import Node, NodeParams, Persist
    from eve.zboot import Zboot


class Agent:
    """One of EVE's agents on one node, for one boot.

    An agent object lives as long as its process: the node makes new ones at every power-on and
    reset, so volatile state is simply the agent's attributes, and what survives a reboot is in
    :attr:`persist`. Agents reach each other through :attr:`node` (``self.node.zedagent.publish``),
    as EVE's agents reach each other through pubsub; every action goes to the node's one outbox.
    """

    __slots__ = ("node", "p", "rng", "luck")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.p: NodeParams = node.p
        self.rng: np.random.Generator = node.rng
        self.luck: np.random.Generator = node.luck

    @property
    def persist(self) -> Persist:
        return self.node.persist

    @property
    def zboot(self) -> Zboot:
        return self.node.persist.zboot

    @property
    def items(self) -> GlobalConfig:
        return self.node.persist.items

    def item(self, key: str) -> float:
        return self.node.item(key)

    def _timer(self, name: TimerName, at: float) -> None:
        self.node._out.append(SetTimer(name, at))

    def _note(self, what: str, **data: Any) -> None:
        self.node._out.append(Note(what, data))

    def _send(self, kind: str, body: dict[str, Any], now: float, ctx: Any = None, *, ports: tuple[str, ...] | None = None) -> int:
        return self.node._send(kind, body, now, ctx, ports=ports)
