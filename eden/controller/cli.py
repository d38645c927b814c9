"""``eden controller ...`` subcommands (wired into :mod:`eden.cli`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import get_args

from eden.controller.client import AdminClient, AdminError
from eden.controller.store import TemplateStatus
from eden.controller.layout import Layout
from eden.errors import EXIT_INVALID, EXIT_OK, InfrastructureError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    c = sub.add_parser("controller", help="the real EVE API v2 controller").add_subparsers(dest="ctl", required=True)
    p = c.add_parser("init", help="create the PKI, admin token and config in DIR")
    p.add_argument("dir", type=Path)
    p.add_argument("--server", default="localhost:8443", help="HOST:PORT devices use (the CONFIG 'server' file)")
    p.add_argument("--san", action="append", default=[], help="extra TLS subject alt name (hostname or IP); repeatable")
    p.add_argument("--learn", action="store_true", help="auto-approve the first PCR template each device quotes")
    p.add_argument("--tofu", action="store_true",
                   help="real TPMs: learn each device's firmware PCRs from its first quote whose PCR 13 is a declared release")
    p = c.add_parser("device-config", help="write an EVE CONFIG partition for one serial and pre-register it")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--serial", required=True)
    p.add_argument("--out", type=Path, required=True)
    p = c.add_parser("serve", help="run the controller (HTTPS device API + admin API)")
    p.add_argument("dir", type=Path)
    p.add_argument("--listen", default=None, help="HOST:PORT for the device API (default 127.0.0.1:<server port>)")
    p.add_argument("--admin-listen", default="127.0.0.1:0", help="HOST:PORT for the admin API (default 127.0.0.1:0)")
    p.add_argument("--admin-public", action="store_true",
                   help="allow a non-loopback --admin-listen (the admin API is then served over TLS)")
    p.add_argument("--accept-expired-certs", action="store_true",
                   help="lab only: accept expired or not-yet-valid device certificates at register")
    p.add_argument("--content-from", action="append", default=[], type=Path, metavar="DIR",
                   help="a directory whose files the admin API may add as content by path (repeatable; default none: upload)")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                   help="override one limit (docs/security.md lists them); repeatable")

    def admin(name: str, help: str) -> argparse.ArgumentParser:
        q = c.add_parser(name, help=help)
        q.add_argument("--dir", type=Path, required=True, help="controller DIR (reads serve.json and admin.token)")
        return q

    q = admin("preregister", "pre-register a device serial")
    q.add_argument("serial")
    q.add_argument("--firmware", default="")
    q.add_argument("--image", action="append", default=[], metavar="NAME=VERSION:MEASUREMENT")
    q.add_argument("--config", default=None, help="initial config as JSON ({items, baseos, apps, maintenance})")
    q.add_argument("--learn", action="store_true", help="auto-approve the first PCR template this device quotes")
    q.add_argument("--tofu", action="store_true", help="trust-on-first-use PCR templates for this device")
    admin("devices", "list devices")
    q = admin("device", "one device's state and latest info")
    q.add_argument("serial")
    q = admin("set-items", "set configItems (global unless --serial)")
    q.add_argument("items", nargs="+", metavar="KEY=VALUE")
    q.add_argument("--serial", default=None)
    q = admin("baseos", "set the base OS image")
    q.add_argument("serial")
    q.add_argument("image")
    q.add_argument("version")
    q.add_argument("--no-activate", action="store_true")
    for name, what in (("retry-update", "bump the base OS retry counter"), ("reboot", "bump the reboot counter"),
                       ("shutdown", "bump the shutdown counter")):
        admin(name, what).add_argument("serial")
    q = admin("app", "set (JSON spec) or remove (--remove) an app")
    q.add_argument("serial")
    q.add_argument("name")
    q.add_argument("spec", nargs="?", default=None)
    q.add_argument("--remove", action="store_true")
    q = admin("events", "print events after --since as JSON lines")
    q.add_argument("--since", type=int, default=0)
    q.add_argument("--wait", type=float, default=0.0)
    q = admin("templates", "list PCR templates")
    q.add_argument("--status", choices=get_args(TemplateStatus), default=None)
    q = admin("approve", "approve a pending PCR template")
    q.add_argument("id", type=int)
    admin("stats", "per-endpoint request counts and latency percentiles")
    admin("revoke-cert", "revoke a device's certificate (device deleted): its requests are refused").add_argument("serial")
    q = admin("report", "the last report of an unmodelled kind (ZI_HARDWARE, flowlog, ...), payload in base64")
    q.add_argument("serial")
    q.add_argument("kind")
    q = admin("info", "the last info of each object a device reported (volumes, content trees, hardware, ...)")
    q.add_argument("serial")
    q.add_argument("--kind", default=None, help="one ZInfoTypes name, e.g. ZI_VOLUME")
    q = admin("answer", "the device API's fault switch: normal, 503 (every request answered 503) or hang (held unanswered)")
    q.add_argument("mode", choices=["normal", "503", "hang"])
    q = admin("refuse-certs", "refuse a device's ATTEST_REQ_CERT posts with 404 (on), or accept them again (off)")
    q.add_argument("serial")
    q.add_argument("mode", choices=["on", "off"])
    q = admin("tofu", "trust-on-first-use PCR templates: on/off (controller-wide unless --serial), or reset a device")
    q.add_argument("mode", choices=["on", "off", "reset"])
    q.add_argument("--serial", default=None)
    content = c.add_parser("content", help="base OS images the controller serves from its datastore")
    csub = content.add_subparsers(dest="content_cmd", required=True)
    q = csub.add_parser("add", help="store FILE as content NAME (through the running controller, else offline)")
    q.add_argument("--dir", type=Path, required=True, help="controller DIR")
    q.add_argument("name")
    q.add_argument("file", type=Path)
    q.add_argument("--version", default="", help="the base OS version this file is (default: any version of NAME)")
    q.add_argument("--pcr13", default=None, help="PCR 13 (hex) a device booted from this release quotes")
    q.add_argument("--upload", action="store_true", help="stream the bytes over the admin API instead of passing the path")
    q = csub.add_parser("list", help="list the stored content")
    q.add_argument("--dir", type=Path, required=True, help="controller DIR")


def _pairs(items: list[str]) -> dict[str, str | int | bool]:
    """KEY=VALUE pairs; a VALUE that parses as a JSON number or boolean is sent as one."""
    out: dict[str, str | int | bool] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key] = parsed if isinstance(parsed, (bool, int)) else value
    return out


def _print(data: object) -> None:
    print(json.dumps(data, indent=1, default=str))


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except AdminError as exc:
        print(f"error: {exc}", flush=True)
        return EXIT_INVALID
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", flush=True)
        return EXIT_INVALID


def _run(args: argparse.Namespace) -> int:
    from eden.controller import setup

    if args.ctl == "init":
        try:
            layout = setup.init(args.dir, server=args.server, sans=args.san, learn=args.learn, tofu=args.tofu)
        except setup.AlreadyInitialised as exc:
            print(f"error: {exc}")
            return EXIT_INVALID
        print(f"initialised {layout.root} (server {args.server}); admin token in {layout.token}")
        return EXIT_OK
    if args.ctl == "device-config":
        layout = Layout(args.dir)
        files = setup.device_config(layout, args.serial, args.out)
        _preregister_offline_or_live(layout, args.serial)
        print(f"wrote {', '.join(files)} to {args.out}; serial {args.serial} pre-registered")
        return EXIT_OK
    if args.ctl == "serve":
        from eden.controller.server import run as serve

        layout = Layout(args.dir)
        if not layout.initialised():
            raise InfrastructureError(f"{args.dir} is not an initialised controller directory (run eden controller init)")
        listen = args.listen or f"127.0.0.1:{layout.read_config()['server'].rpartition(':')[2]}"
        from eden.controller import limits
        from eden.controller.server import Options

        for d in args.content_from:
            if not d.is_dir():
                raise ValueError(f"--content-from {d}: not a directory")
        options = Options(limits=limits.parse(args.limit), accept_expired_certs=args.accept_expired_certs,
                          content_from=tuple(args.content_from), admin_public=args.admin_public)
        return serve(layout, listen, args.admin_listen, options)
    if args.ctl == "content":
        return _content(args)
    if not Layout(args.dir).serve_json.exists():
        raise InfrastructureError(f"no running controller in {args.dir} (serve.json missing)")
    client = AdminClient.for_dir(args.dir)
    c = args.ctl
    if c == "preregister":
        images = {}
        for spec in args.image:
            name, _, rest = spec.partition("=")
            version, _, measurement = rest.partition(":")
            if not name or not measurement:
                raise ValueError(f"--image wants NAME=VERSION:MEASUREMENT, got {spec!r}")
            images[name] = {"version": version, "measurement": measurement}
        config = json.loads(args.config) if args.config else None
        _print(client.preregister(args.serial, firmware=args.firmware, images=images, config=config, learn=args.learn,
                                  tofu=args.tofu))
    elif c == "devices":
        _print(client.devices())
    elif c == "device":
        _print(client.device(args.serial))
    elif c == "set-items":
        _print(client.set_items(_pairs(args.items), args.serial))
    elif c == "baseos":
        _print(client.set_baseos(args.serial, args.image, args.version, not args.no_activate))
    elif c == "retry-update":
        _print(client.retry_update(args.serial))
    elif c == "reboot":
        _print(client.reboot(args.serial))
    elif c == "shutdown":
        _print(client.shutdown(args.serial))
    elif c == "app":
        _print(client.set_app(args.serial, args.name, None if args.remove else json.loads(args.spec or "{}")))
    elif c == "events":
        for event in client.events(args.since, args.wait):
            print(json.dumps(event, default=str))
    elif c == "templates":
        _print(client.templates(args.status))
    elif c == "approve":
        _print(client.approve(args.id))
    elif c == "stats":
        _print(client.stats())
    elif c == "revoke-cert":
        _print(client.revoke_cert(args.serial))
    elif c == "report":
        _print(client.last_report(args.serial, args.kind))
    elif c == "info":
        _print(client.info(args.serial, args.kind))
    elif c == "answer":
        _print(client.set_answer_mode(args.mode))
    elif c == "refuse-certs":
        _print(client.refuse_certs(args.serial, args.mode == "on"))
    elif c == "tofu":
        if args.mode == "reset":
            if not args.serial:
                raise ValueError("tofu reset needs --serial")
            _print(client.reset_device_tofu(args.serial))
        elif args.serial:
            _print(client.set_device_tofu(args.serial, args.mode == "on"))
        else:
            _print(client.set_tofu(args.mode == "on"))
    return EXIT_OK


def _live(layout: Layout) -> bool:
    """A controller process is serving ``layout`` (serve.json names a live pid)."""
    if not layout.serve_json.exists():
        return False
    try:
        os.kill(int(json.loads(layout.serve_json.read_text()).get("pid")), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _content(args: argparse.Namespace) -> int:
    layout = Layout(args.dir)
    if not layout.initialised():
        raise InfrastructureError(f"{args.dir} is not an initialised controller directory")
    if args.content_cmd == "add" and not args.file.is_file():
        raise ValueError(f"{args.file} is not a readable file")
    if _live(layout):
        client = AdminClient.for_dir(layout.root)
        if args.content_cmd == "add":
            try:
                row = client.add_content(args.name, args.file, args.version, args.pcr13, upload=args.upload)
            except AdminError as exc:
                if exc.status != 403 or args.upload:
                    raise
                # the controller takes no paths outside its --content-from directories: send the bytes
                row = client.add_content(args.name, args.file, args.version, args.pcr13, upload=True)
            _print(row)
        else:
            _print(client.content())
        return EXIT_OK
    from eden.controller.core import BadRequest, Controller

    ctl = Controller(layout)
    try:
        if args.content_cmd == "add":
            try:
                _print(ctl.add_content(args.name, args.file, version=args.version, pcr13=args.pcr13))
            except BadRequest as exc:
                raise ValueError(str(exc)) from None
        else:
            _print(ctl.content_list())
    finally:
        ctl.close()
    return EXIT_OK


def _preregister_offline_or_live(layout: Layout, serial: str) -> None:
    """Through the admin API when the controller runs, else straight into its database."""
    if layout.serve_json.exists():
        pid = json.loads(layout.serve_json.read_text()).get("pid")
        try:
            os.kill(int(pid), 0)
            live = True
        except (OSError, TypeError, ValueError):
            live = False
        if live:
            client = AdminClient.for_dir(layout.root)
            try:
                client.device(serial)
            except AdminError:
                client.preregister(serial)
            return
    from eden.controller.core import Controller

    ctl = Controller(layout)
    try:
        if serial not in ctl.by_serial:
            ctl.preregister(serial)
    finally:
        ctl.close()
