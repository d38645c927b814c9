"""``eden image build|info``: the reference device image (docs/reference-image.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eden.errors import EXIT_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("image", help="build or list the reference device image (Debian, A/B boot, TPM) for the QEMU backend")
    p.add_argument("action", choices=("build", "info"), help="build: build or reuse the cached image and print its directory; info: list cached images")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR", help="image cache (default: $EDEN_IMAGE_CACHE or ~/.cache/eden/images)")
    p.add_argument("--force", action="store_true", help="build even if an image with the same inputs is cached")
    p.add_argument("--authorized-keys", type=Path, default=None, metavar="FILE",
                   help="SSH public keys baked into the image for root (the CONFIG partition can add more at boot)")
    p.add_argument("--json", action="store_true", help="info: print JSON")
    p.add_argument("--quiet", action="store_true", help="build: no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    from eden.image.build import build, cached_images, default_cache

    cache = args.cache or default_cache()
    if args.action == "build":
        from eden.terminal import err

        def log(line: str) -> None:
            if not args.quiet:
                err.print(f"eden image: {line}", markup=False, highlight=False)

        print(build(cache, force=args.force, authorized_keys=args.authorized_keys, log=log))
        return EXIT_OK
    images = cached_images(cache)
    if args.json:
        print(json.dumps(images, indent=1))
        return EXIT_OK
    if not images:
        print(f"no images in {cache}")
    for info in images:
        print(f"{info['dir']}  {info['version']}  built {info['built']} in {info['build_seconds']} s  "
              f"kernel {info['kernel']['release']}  {int(info['disk_bytes']) >> 20} MiB on disk")  # type: ignore[index]
    return EXIT_OK
