"""``eden agent``: run one emulated EVE device against a real controller (see docs/agent.md).

Exit codes of one boot (``--once``): 0 powered off (SIGTERM/SIGINT) or the reboot command ran;
75 (:data:`~eden.agent.driver.EXIT_REBOOT`) the device reset itself and must be started again;
2 invalid input or infrastructure error. Without ``--once`` the command supervises itself: it
runs each boot in a child process and starts a new one on 75.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np

from eden.agent.driver import EXIT_REBOOT, AgentDriver, EventWriter, PortUrls
from eden.agent.platform import NoPlatform, Platform, ReferenceImagePlatform
from eden.agent.spec import load_spec
from eden.agent.state import StateDir
from eden.agent.tpm import detect_tpm
from eden.agent.transport import DeviceLink, Transport, image_map
from eden.errors import EXIT_OK, InvalidInput
from eve.node import _TAMPER_PCR, Node

TAMPER_STAGES = ("firmware", *sorted(_TAMPER_PCR))
_CONFIG_FILES = ("server", "root-certificate.pem", "onboard.cert.pem", "onboard.key.pem")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("agent", help="run one emulated EVE device (the node model in real time) against a controller")
    p.add_argument("action", nargs="?", default="run", choices=("run", "tamper", "reference"),
                   help="run (default); tamper with the powered-off device's disk; reference: print the attestation reference of --spec as JSON")
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR", help="the device's disk: persist, identity, /config")
    p.add_argument("--spec", type=Path, default=None, metavar="FILE", help="device spec (JSON/YAML); needed on the first start")
    p.add_argument("--controller", default=None, metavar="URL", help="controller URL for every port without --port-url (default: config/server)")
    p.add_argument("--port-url", action="append", default=[], metavar="PORT=URL", help="controller URL through one network port, e.g. eth0=https://127.0.0.1:1234")
    p.add_argument("--config-dir", type=Path, default=None, metavar="DIR", help="an EVE CONFIG partition (eden controller device-config) to install")
    p.add_argument("--root-cert", type=Path, default=None, metavar="FILE", help="controller root certificate (PEM)")
    p.add_argument("--once", action="store_true", help="run one boot; exit 75 when the device resets itself")
    p.add_argument("--events", type=Path, default=None, metavar="FILE", help="append event lines here instead of stdout")
    p.add_argument("--reboot-command", default=None, metavar="CMD", help="run CMD (e.g. 'reboot') on a device reset instead of exiting 75")
    p.add_argument("--stage", default=None, choices=TAMPER_STAGES, help="tamper: what the attacker changes")
    p.add_argument("--links-file", type=Path, default=None, metavar="FILE",
                   help="the ports whose link is down, one name per line (absent: all up); read every second")
    p.add_argument("--faults-file", type=Path, default=None, metavar="FILE",
                   help="the fault inbox: JSON lines the harness appends (hang, crash), read every second; "
                        "only lines appended after the boot started count (eden/agent/faults.py)")
    p.add_argument("--platform", default="auto", choices=("auto", "model", "reference-image"),
                   help="the hardware under the model: 'reference-image' = the real A/B disk and TPM inside the "
                        "reference image (eden/agent/platform.py); 'model' = none; auto picks by /run/eden/boot.env")


def run(args: argparse.Namespace) -> int:
    if args.action == "reference":
        if args.spec is None:
            raise InvalidInput.at("--spec", 0, 0, "reference needs --spec FILE")
        print(json.dumps(load_spec(args.spec).attestation_reference(), indent=1, sort_keys=True))
        return EXIT_OK
    if args.state_dir is None:
        raise InvalidInput.at("--state-dir", 0, 0, f"eden agent {args.action} needs --state-dir DIR")
    if args.action == "tamper":
        return tamper(args)
    urls = _port_urls(args)
    if args.once:
        return asyncio.run(run_boot(args, urls))
    return supervise(args)


# -------------------------------------------------------------------------------------- helpers --
def _port_urls(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.port_url:
        port, sep, url = item.partition("=")
        if not sep or not port or not url.startswith(("https://", "http://")):
            raise InvalidInput.at("--port-url", 0, 0, f"bad --port-url {item!r}", "use PORT=https://HOST:PORT")
        out[port] = url
    return out


def _server_url(server: str | None) -> str | None:
    if not server:
        return None
    return server if "://" in server else f"https://{server}"


@contextlib.contextmanager
def _device_lock(state: StateDir) -> Iterator[None]:
    """One process owns a device's disk at a time (a running agent, or ``tamper``)."""
    state.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(state.path / "agent.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInput.at(str(state.path), 0, 0, "the device is running (its state directory is locked)") from None
        yield
    finally:
        os.close(fd)


def _prepare(args: argparse.Namespace, state: StateDir) -> None:
    """First start: spec + identity; any start: install the /config files that were given."""
    if not state.exists() and not state.spec_file.is_file():
        if args.spec is None:
            raise InvalidInput.at(str(state.path), 0, 0, "new state directory and no --spec", "pass --spec FILE on the first start")
        state.init(load_spec(args.spec))
    elif args.spec is not None and load_spec(args.spec) != state.load_spec():
        raise InvalidInput.at(str(args.spec), 0, 0, f"{state.path} holds a device made from a different spec",
                              "use a new --state-dir, or start without --spec")
    elif not (state.path / "device.cert.pem").is_file():
        state.init(state.load_spec())  # a power cut during the first start, before the identity was made
    files: dict[str, bytes] = {}
    if args.config_dir is not None:
        for name in _CONFIG_FILES:
            if (args.config_dir / name).is_file():
                files[name] = (args.config_dir / name).read_bytes()
    if args.root_cert is not None:
        files["root-certificate.pem"] = args.root_cert.read_bytes()
    state.write_controller_config(
        server=files["server"].decode().strip() if "server" in files else None,
        root_pem=files.get("root-certificate.pem"),
        onboard_cert_pem=files.get("onboard.cert.pem"),
        onboard_key_pem=files.get("onboard.key.pem"),
    )


def _open_events(path: Path | None) -> TextIO:
    if path is None:
        return sys.stdout
    return open(path, "a", encoding="utf-8")


# ---------------------------------------------------------------------------------------- boots --
def _process_age() -> float | None:
    """Seconds since this process was started (interpreter start and imports), from /proc."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK")), 2)


async def run_boot(args: argparse.Namespace, port_urls: dict[str, str]) -> int:
    # Where a boot's start-up time goes (in agent_start): under TCG it is a large part of the
    # time from power-on to an onboarded device (docs/qemu.md).
    startup: dict[str, float] = {}
    if (age := _process_age()) is not None:
        startup["since_exec_s"] = age
    t0 = time.monotonic()
    state = StateDir(args.state_dir)
    with _device_lock(state):
        _prepare(args, state)
        startup["prepare_s"] = round(time.monotonic() - t0, 2)
        spec = state.load_spec()
        cc = state.controller_config()
        stream = _open_events(args.events)
        try:
            async with Transport(cc.root_pem, connections=8, fresh_connections=True) as transport:
                link = DeviceLink(device=state.device_identity(), onboard=cc.onboard, images=image_map(list(spec.images)),
                                  serial=spec.serial, soft_serial=state.soft_serial(), checkpoint=state.certs_checkpoint)
                transport.load_checkpoint(link)  # the signing certs survive the reboot (spec §2.1)
                driver = AgentDriver(
                    spec=spec,
                    params=spec.node_params(),
                    state=state,
                    transport=transport,
                    link=link,
                    urls=PortUrls(port_urls, args.controller or _server_url(cc.server)),
                    events=EventWriter(stream),
                    tpm=detect_tpm(),
                    startup=startup,
                    faults_file=args.faults_file,
                )
                driver.platform = _platform(args, state, driver, transport)
                startup["setup_s"] = round(time.monotonic() - t0, 2)
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, driver.power_off)
                driver.start()
                outcome = await driver.wait()
        finally:
            if stream is not sys.stdout:
                stream.close()
    if outcome.kind != "reboot":
        return EXIT_OK
    if args.reboot_command:
        subprocess.run(shlex.split(args.reboot_command), check=False)
        return EXIT_OK
    return EXIT_REBOOT


DOWNLOAD_TIMEOUT = 900.0
"""Seconds for one base-OS download attempt (a few hundred MB through QEMU user networking)."""


def _platform(args: argparse.Namespace, state: StateDir, driver: AgentDriver, transport: Transport) -> Platform:
    """The reference image's disk and TPM when running inside it (or when asked), else the model alone."""
    from eden.image.guest import BOOT_ENV

    choice = args.platform
    if choice == "auto":
        choice = "reference-image" if BOOT_ENV.is_file() else "model"
    if choice == "model":
        return NoPlatform(args.links_file)

    async def download(path: str, dest: Path, sha256: str, size: int) -> None:
        urls = driver.urls.for_ports(tuple(p.name for p in driver.params.ports)) or driver.urls.for_ports(("",))
        await transport.download(urls, path, dest, sha256=sha256, size=size, timeout=DOWNLOAD_TIMEOUT)

    return ReferenceImagePlatform(persist_dir=state.path, tpm=driver.tpm,
                                  notify=lambda what, data: driver.events(driver.spec.serial, what, data),
                                  download=download)


def supervise(args: argparse.Namespace) -> int:
    """Run each boot in a child process (``--once``); a reset exits 75 and is started again.
    SIGTERM/SIGINT are passed to the running boot, which powers off and exits 0."""
    argv = [sys.executable, "-m", "eden", "agent", "--state-dir", str(args.state_dir), "--once"]
    for flag, value in (("--spec", args.spec), ("--controller", args.controller), ("--config-dir", args.config_dir),
                        ("--root-cert", args.root_cert), ("--events", args.events), ("--reboot-command", args.reboot_command),
                        ("--links-file", args.links_file), ("--faults-file", args.faults_file)):
        if value is not None:
            argv += [flag, str(value)]
    for item in args.port_url:
        argv += ["--port-url", item]
    argv += ["--platform", args.platform]
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping:
            child = subprocess.Popen(argv)
            try:
                rc = child.wait()
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            if rc != EXIT_REBOOT:
                return rc
            time.sleep(0.05)  # a reset is not instantaneous; also keeps a crash loop from spinning
        return EXIT_OK  # stopped between two boots: the device is off
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def tamper(args: argparse.Namespace) -> int:
    """An attacker changes the powered-off device's disk; measured at its next boot (§5)."""
    if args.stage is None:
        raise InvalidInput.at("--stage", 0, 0, "tamper needs --stage", f"one of {', '.join(TAMPER_STAGES)}")
    state = StateDir(args.state_dir)
    with _device_lock(state):
        saved = state.load()
        if saved is None:
            raise InvalidInput.at(str(state.path), 0, 0, "no device state to tamper with", "start the device once first")
        spec = state.load_spec()
        node = Node(spec.node_params(), spec.image, np.random.default_rng(0))
        node.persist = saved.persist
        events = EventWriter(_open_events(args.events))
        for action in node.tamper(args.stage, time.time()):
            events(spec.serial, getattr(action, "what", type(action).__name__), getattr(action, "data", {}))
        state.save(node.persist, saved.boots)
    return EXIT_OK
