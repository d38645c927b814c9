"""Power drivers for lab boards: PDUDaemon, a shell command, or a person.

eden never talks to PDUs itself: PDUDaemon (https://github.com/pdudaemon/pdudaemon) already drives
dozens of them, so :class:`PduDaemonPower` is an HTTP client of its listener. Relays, USB hubs
(``uhubctl``) and home-made switches go through :class:`CommandPower`; a board on a desk through
:class:`ManualPower`.

A driver's success means the power request was carried out as far as the driver can tell, not that
the board is on: a PDU relay, a command or a person can all "succeed" with the board still dark.
Whether the board really came up is confirmed by the backend watching it (its console, the
controller), never by the driver's reply.

Every failure to reach or run the power control is an :class:`~eden.errors.InfrastructureError`
naming the place: the board is then *broken* for the run, which says nothing about the product.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Protocol, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from eden.errors import InfrastructureError
from eden.runtime.deadline import Deadline
from eden.lab.person import ask_person
from eden.lab.shell import run_shell


class PowerDriver(Protocol):
    """What the board backend needs from a power control."""

    name: str

    async def on(self, deadline: Deadline) -> None: ...

    async def off(self, deadline: Deadline) -> None: ...

    async def cycle(self, off_for: float, deadline: Deadline) -> None: ...

    def describe(self) -> str: ...


def _public_url(url: str) -> str:
    """``url`` without user:password, for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PduDaemonPower:
    """A PDU port switched through PDUDaemon's HTTP listener (``/power/control/{on,off,reboot}``).

    PDUDaemon 1.1.1 answers a request once its driver has run the job (200 ``OK - accepted request``)
    or gave up after its retries (500, also for a PDU ``hostname`` missing from its configuration).
    Its driver may still report success for a switch that did nothing (its ``localcmdline`` driver
    ignores the command's exit status), hence the module rule: the board's state is observed, not
    inferred.
    """

    name = "pdudaemon"

    def __init__(self, url: str, hostname: str, port: int | str, *, place: str) -> None:
        self.url = url.rstrip("/")
        self.hostname = hostname
        self.port = str(port)
        self.place = place

    def describe(self) -> str:
        return f"pdudaemon {_public_url(self.url)} pdu {self.hostname} port {self.port}"

    async def on(self, deadline: Deadline) -> None:
        await self._request("on", {}, deadline)

    async def off(self, deadline: Deadline) -> None:
        await self._request("off", {}, deadline)

    async def cycle(self, off_for: float, deadline: Deadline) -> None:
        """PDUDaemon's ``reboot``: off, ``delay`` seconds, on, all inside PDUDaemon.

        One request rather than off + sleep + on here, so the board ends powered even if eden dies
        in between. PDUDaemon takes the delay as whole seconds (``int()`` of the query value; a
        fraction is refused), so ``off_for`` is rounded up: the board is never off for less.
        """
        await self._request("reboot", {"delay": str(max(0, math.ceil(off_for)))}, deadline)

    async def _request(self, action: str, extra: dict[str, str], deadline: Deadline) -> None:
        query = urlencode({"hostname": self.hostname, "port": self.port, **extra})
        url = f"{self.url}/power/control/{action}?{query}"
        where = f"place {self.place}: PDUDaemon at {_public_url(self.url)} (pdu {self.hostname} port {self.port})"
        timeout = aiohttp.ClientTimeout(total=max(0.001, deadline.remaining()))
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url) as response:
                    body = (await response.text(errors="replace")).strip()
                    status = response.status
        except asyncio.TimeoutError:
            raise InfrastructureError(f"{where}: no answer to power {action} in time "
                                      "(PDUDaemon may still carry it out)") from None
        except aiohttp.ClientError as exc:
            raise InfrastructureError(f"{where}: cannot send power {action}: {exc}") from None
        if status != 200:
            raise InfrastructureError(
                f"{where}: power {action} refused: HTTP {status} {body[:200]!r} "
                "(an unknown pdu hostname, a bad port, or the PDU failed after PDUDaemon's retries; see its log)"
            )


class CommandPower:
    """Shell commands that switch the power (a relay board, ``uhubctl``, a smart plug's CLI).

    Each command runs under ``/bin/sh -c`` in its own session and process group with ``EDEN_PLACE``
    (and ``EDEN_POWER``: on/off/cycle) in its environment; at its end, or at its timeout, the whole
    group is killed, so a command that leaves helpers behind leaks nothing.
    """

    name = "command"

    def __init__(self, on: str, off: str, cycle: str | None = None, *, timeout: float = 30.0, place: str,
                 env: Mapping[str, str] | None = None) -> None:
        self.on_cmd = on
        self.off_cmd = off
        self.cycle_cmd = cycle
        self.timeout = timeout
        self.place = place
        self.env = dict(env or {})

    def describe(self) -> str:
        return "command" + (" (with a cycle command)" if self.cycle_cmd else "")

    async def on(self, deadline: Deadline) -> None:
        await self._run("on", self.on_cmd, deadline)

    async def off(self, deadline: Deadline) -> None:
        await self._run("off", self.off_cmd, deadline)

    async def cycle(self, off_for: float, deadline: Deadline) -> None:
        """The cycle command (with ``EDEN_OFF_FOR``) if there is one, else off, ``off_for`` s, on."""
        if self.cycle_cmd is not None:
            await self._run("cycle", self.cycle_cmd, deadline, {"EDEN_OFF_FOR": f"{off_for:g}"})
            return
        await self.off(deadline)
        if off_for > deadline.remaining():
            raise InfrastructureError(f"place {self.place}: no time left for a {off_for:g} s power cycle")
        await asyncio.sleep(off_for)
        await self.on(deadline)

    async def _run(self, action: str, command: str, deadline: Deadline, extra: dict[str, str] | None = None) -> None:
        await run_shell(command, place=self.place, what=f"the power {action} command", deadline=deadline,
                        timeout=self.timeout, env={**self.env, **(extra or {}), "EDEN_POWER": action})


class ManualPower:
    """A person switches the power when asked and confirms with Enter.

    Without a person (standard input is not a terminal and no ``stdin`` was given) it fails at once
    instead of waiting for a key nobody will press. ``prompt`` may use ``{place}`` and ``{action}``.
    """

    name = "manual"

    def __init__(self, prompt: str | None = None, *, place: str, stdin: TextIO | None = None,
                 stdout: TextIO | None = None) -> None:
        self.prompt = prompt or "Place {place}: switch the power {action}, then press Enter"
        self.place = place
        self.stdin = stdin
        self.stdout = stdout

    def describe(self) -> str:
        return "manual"

    async def on(self, deadline: Deadline) -> None:
        await self._ask("ON", deadline)

    async def off(self, deadline: Deadline) -> None:
        await self._ask("OFF", deadline)

    async def cycle(self, off_for: float, deadline: Deadline) -> None:
        await self._ask("OFF", deadline)
        if off_for > deadline.remaining():
            raise InfrastructureError(f"place {self.place}: no time left for a {off_for:g} s power cycle")
        await asyncio.sleep(off_for)
        await self._ask("ON", deadline)

    async def _ask(self, action: str, deadline: Deadline) -> None:
        text = self.prompt.replace("{place}", self.place).replace("{action}", action)
        await ask_person(text, place=self.place, what=f"power {action}", deadline=deadline,
                         stdin=self.stdin, stdout=self.stdout)
