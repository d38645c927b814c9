"""EVE's agents, one class each, over one node's persisted state and outbox (:class:`eve.agents.base.Agent`).

:class:`eve.node.Node` composes them and is the only entry point for drivers; each module's
docstring says which EVE agent it models, the spec sections and the EVE source paths.
"""
