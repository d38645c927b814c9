"""nim: the device port configs (DPCs), their verification and the periodic port tests
(spec §4; P:dpcmanager/dpc.go, verify.go; P:types/dpc.go; list rules in :mod:`eve.dpc`).

Without a controller-pushed network config the profile's management ports are the one DPC (plus
the last-resort DPC when ``network.fallback.any.eth`` is enabled); with one, nim's persisted list.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from eve import dpc as dpcl
from eve.agents.base import Agent
from eve.dpc import Dpc
from eve.enums import (
    DPCState,
)
from eve.vocab import KeyedTimer, Timer, TimerFamily

if TYPE_CHECKING:
    from eve.node import Node




class Nim(Agent):
    """nim for one boot: the DPC in use, its state and the verification walk."""

    __slots__ = ("dpc_index", "dpc_state", "port_fails", "reverify", "_verify_gen", "_cache")

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.dpc_index = 0
        self.dpc_state = DPCState.NONE
        self.port_fails = 0
        self.reverify: int | None = None
        self._verify_gen = 0
        self._cache: dict[bool, list[tuple[str, tuple[str, ...]]]] = {}

    def ports(self, index: int | None = None) -> tuple[str, ...]:
        """The ports of DPC ``index`` (default: the one in use); () when there is none."""
        dpcs = self.dpc_list()
        idx = self.dpc_index if index is None else index
        if not dpcs or idx < 0 or idx >= len(dpcs):
            return ()
        return dpcs[idx][1]

    def dpc_list(self) -> list[tuple[str, tuple[str, ...]]]:
        """DPCs by priority, index 0 first (§4): the controller-given management ports, then the
        last-resort DPC (all Ethernet ports) when ``network.fallback.any.eth`` is enabled."""
        lastresort = self.items.get("network.fallback.any.eth") == "enabled"
        if self.persist.dpcs is not None:
            names = {p.name for p in self.p.ports}
            return [(d.key, () if d.broken else tuple(p for p in d.ports if p in names)) for d in self.dpcs()]
        cached = self._cache.get(lastresort)
        if cached is not None:
            return cached
        mgmt = sorted((p for p in self.p.ports if p.mgmt), key=lambda p: (p.cost, p.name))
        dpcs = [("zedagent", tuple(p.name for p in mgmt))]
        if lastresort:
            eth = sorted((p for p in self.p.ports if p.kind == "ethernet"), key=lambda p: (p.cost, p.name))
            dpcs.append(("lastresort", tuple(p.name for p in eth)))
        self._cache[lastresort] = dpcs
        return dpcs

    def mark_working(self) -> None:
        """The DPC in use counts as working (a certs answer, zedagent's start), unless a pushed DPC
        list is being verified: then that walk decides (§4)."""
        if self.reverify is None or self.persist.dpcs is None:
            self.dpc_state = DPCState.SUCCESS

    # ----------------------------------------------------------------------------- port tests --
    def on_port_test_timer(self, now: float) -> None:
        self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
        if self.reverify is None:
            self._send("ping", {}, now, ctx=("test", self.dpc_index))

    def on_port_better_timer(self, now: float) -> None:
        better = self.item("timer.port.testbetterinterval")
        if self.persist.dpcs is not None:
            # §4 dpcmanager.go: the testBetter timer restarts the verification from index 0
            # (runVerify arms it again when the walk ends away from index 0).
            if self.dpc_index != 0 and self.reverify is None:
                self.restart_verify(now)
            return
        if self.dpc_index != 0 and self.reverify is None:
            self._send("ping", {}, now, ctx=("better", 0), ports=self.ports(0))
        if better > 0 and self.dpc_index != 0:
            self._timer(Timer.PORTBETTER, now + better)

    def on_ping_answer(self, status: int, body: dict[str, Any], ctx: Any, now: float) -> None:
        mode, index = ctx[0], ctx[1]
        ok = 200 <= status < 300 or status == 304  # any 2xx/304, body ignored (§2.1)
        # §4 (P:dpcmanager/verify.go): connection refused and any HTTP 5xx are a remote temporary
        # failure: the DPC is kept (RemoteWait) and counts as working, so an overloaded controller
        # answering 503 never makes a device switch DPC.
        remote_temporary = body.get("error") == "refused" or 500 <= status <= 511
        if mode == "verify":
            self._verify_answer(ok, remote_temporary, ctx, now)
            return
        if mode == "better":
            if ok or remote_temporary:
                self._switch_dpc(0, now)
                self.dpc_state = DPCState.SUCCESS if ok else DPCState.REMOTE_WAIT
            return
        if mode == "test":
            if ok:
                self.port_fails = 0
                self.dpc_state = DPCState.SUCCESS
                if self.persist.dpcs is not None and index < len(dpcs := self.dpcs()):
                    dpcs[index].last_succeeded, dpcs[index].state = now, DPCState.SUCCESS
            elif remote_temporary:
                self.dpc_state = DPCState.REMOTE_WAIT  # keep the DPC (§4)
            else:
                self.port_fails += 1
                if self.port_fails >= 2 and self.persist.dpcs is not None:
                    self.restart_verify(now)  # a pushed DPC list: nim's own walk (§4)
                elif self.port_fails >= 2:  # two consecutive failures: re-verify the list (§4)
                    self.reverify = 0
                    self._send("ping", {}, now, ctx=("reverify", 0), ports=self.ports(0))
            return
        # re-verify walks the DPC list by priority and takes the first that works
        if ok or remote_temporary:
            self.reverify = None
            self.port_fails = 0
            self._switch_dpc(index, now)
            self.dpc_state = DPCState.SUCCESS if ok else DPCState.REMOTE_WAIT
            return
        nxt = index + 1
        if nxt < len(self.dpc_list()):
            self.reverify = nxt
            self._send("ping", {}, now, ctx=("reverify", nxt), ports=self.ports(nxt))
        else:
            # Every DPC failed: the device parks at index 0, the most preferred (§4).
            self.reverify = None
            if self.dpc_index != 0:
                self._switch_dpc(0, now)
            self.dpc_state = DPCState.FAIL

    def _switch_dpc(self, index: int, now: float) -> None:
        if index == self.dpc_index:
            return
        self._note("dpc_switch", frm=self.dpc_index, to=index, key=self.dpc_list()[index][0])
        self.dpc_index = index
        self.node.downloader.links_changed(now)  # the usable ports of a download are the new DPC's (§4)
        if index != 0 and self.item("timer.port.testbetterinterval") > 0:
            self._timer(Timer.PORTBETTER, now + self.item("timer.port.testbetterinterval"))
        self.node.zedagent.publish(now)

    # --------------------------------------------------------------- controller network config --
    def dpcs(self) -> list[Dpc]:
        """The DPC list with the last-resort DPC at its end when enabled (TimePriority 1970, §4)."""
        ps = self.persist
        dpcs = list(ps.dpcs or [])
        if self.items.get("network.fallback.any.eth") == "enabled":
            if ps.lastresort is None:
                eth = sorted((p for p in self.p.ports if p.kind == "ethernet"), key=lambda p: (p.cost, p.name))
                ps.lastresort = Dpc("lastresort", tuple(p.name for p in eth), prio=-math.inf)
            dpcs.append(ps.lastresort)
        return dpcs

    def configured_ports(self) -> list[str]:
        """The management ports the current DPC names (DevicePortStatus.ports with isMgmt)."""
        if self.persist.dpcs is None:
            return list(self.ports())
        dpcs = self.dpcs()
        return list(dpcs[self.dpc_index].ports) if 0 <= self.dpc_index < len(dpcs) else []

    def apply_network(self, net: dict[str, Any] | None, now: float) -> None:
        """zedagent turns the controller's network config into a ``zedagent`` DPC and nim adds it
        (§4, P:dpcmanager/dpc.go ``doAddDPC``, ``updateDPCListAndPublish``): it goes to index 0 and
        is verified at once; an unchanged config changes nothing."""
        ps = self.persist
        if net is None or net == ps.net_seen:
            return
        ps.net_seen = net
        if ps.dpcs is None:
            # The bootstrap DPC (the profile's management ports) becomes an entry with its record.
            mgmt = sorted((p for p in self.p.ports if p.mgmt), key=lambda p: (p.cost, p.name))
            working = self.dpc_state in (DPCState.SUCCESS, DPCState.REMOTE_WAIT)
            ps.dpcs = [Dpc("zedagent", tuple(p.name for p in mgmt), prio=-1.0, state=self.dpc_state, last_succeeded=now if working else None)]
        new = Dpc("zedagent", tuple(net.get("mgmt") or ()), prio=now, broken=bool(net.get("broken")))
        self._note("dpc_new", ports=list(new.ports), broken=new.broken)
        current = self.dpcs()[self.dpc_index] if 0 <= self.dpc_index < len(self.dpcs()) else None
        dpcl.insert(ps.dpcs, new)
        if current is not None and current in ps.dpcs:
            self.dpc_index = ps.dpcs.index(current)
        self.restart_verify(now)

    def restart_verify(self, now: float) -> None:
        """``restartVerify`` (§4, P:dpcmanager/verify.go): start at index 0, skipping DPCs that failed
        in the last 5 min; nothing testable parks at index 0 (``parkAtManualOrHighestPriority``)."""
        self._verify_gen += 1
        nxt = dpcl.next_testable(self.dpcs(), 0, now)
        if nxt < 0:
            self.reverify = None
            self._set_index(0, now)
            return
        self._setup_verify(nxt, now, now)

    def _setup_verify(self, index: int, started: float, now: float) -> None:
        """``setupVerify``: the DPC under test becomes the current one (all traffic uses it)."""
        self.reverify = index
        self._set_index(index, now)
        self._verify_attempt(index, started, now)

    def _verify_attempt(self, index: int, started: float, now: float) -> None:
        """One ``verifyDPC``: the controller test over the DPC's ports; a DPC none of whose ports
        exists has nothing to test with and is judged at once (missing interface)."""
        ctx = ("verify", self._verify_gen, index, started)
        d = self.dpcs()[index]
        if not d.broken and not self.ports(index):
            self._verify_answer(False, False, ctx, now)
            return
        self._send("ping", {}, now, ctx=ctx)

    def _set_index(self, index: int, now: float) -> None:
        if index != self.dpc_index:
            self._note("dpc_switch", frm=self.dpc_index, to=index, key=self.dpcs()[index].key)
            self.dpc_index = index
        self.dpc_state = self.dpcs()[index].state
        self.node.zedagent.publish(now)

    def _verify_answer(self, ok: bool, remote_temporary: bool, ctx: Any, now: float) -> None:
        """``verifyDPC``/``runVerify`` (§4): success or a remote temporary failure ends the walk on
        this DPC; a missing interface is waited for 2 x timer.port.testduration (IntfWait); a DPC
        with addresses that cannot reach the controller fails at once (FailWithIPAndDNS); a failure
        moves on to the next testable DPC, and when there is none the device parks at index 0."""
        _mode, gen, index, started = ctx
        dpcs = self.dpcs()
        if gen != self._verify_gen or index >= len(dpcs):
            return  # a newer verification replaced this one
        d = dpcs[index]
        if ok or remote_temporary:
            d.last_succeeded = now
            d.state = DPCState.SUCCESS if ok else DPCState.REMOTE_WAIT
            self.reverify = None
            self.port_fails = 0
            self._set_index(index, now)
            self._compress()
            self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
            better = self.item("timer.port.testbetterinterval")
            if self.dpc_index != 0 and better > 0:
                self._timer(Timer.PORTBETTER, now + better)
            return
        usable = self.ports(index)
        duration = self.item("timer.port.testduration")
        if not usable and not d.broken and now - started < dpcl.WAIT_FOR_INTF_RETRIES * duration:
            d.state = DPCState.INTF_WAIT
            self.dpc_state = d.state
            self._timer(KeyedTimer(TimerFamily.DPC_VERIFY, (gen, index, started)), now + duration)
            return
        d.last_failed = now
        d.state = DPCState.FAIL_WITH_IP_AND_DNS if d.broken else DPCState.FAIL
        if d.broken or usable:
            d.last_error = "no route to the controller over " + ",".join(d.ports)
        else:
            d.last_error = "missing interface " + ",".join(d.ports)
        self._note("dpc_fail", index=index, state=d.state.name)
        nxt = dpcl.next_testable(dpcs, index + 1, now)
        if nxt < 0:
            self.reverify = None
            self._set_index(0, now)
            self._timer(Timer.PORTTEST, now + self.item("timer.port.testinterval"))
            return
        self._setup_verify(nxt, now, now)

    def on_verify_timer(self, key: tuple[int, int, float], now: float) -> None:
        gen, index, started = key
        if gen == self._verify_gen and self.reverify == index:
            self._verify_attempt(index, started, now)

    def _compress(self) -> None:
        ps = self.persist
        if ps.dpcs is None:
            return
        n = len(ps.dpcs)
        cur = self.dpc_index if self.dpc_index < n else -1  # the last-resort DPC is never dropped
        ps.dpcs, new_cur = dpcl.compress(ps.dpcs, cur)
        if cur >= 0:
            self.dpc_index = new_cur
        else:
            self.dpc_index = len(ps.dpcs)
