"""The two rich consoles every command writes to: ``out`` for results, ``err`` for progress and errors.

They live below :mod:`eden.cli` so a subcommand's module (e.g. :mod:`eden.image.cli`) can print
without importing the top-level command line.
"""

from __future__ import annotations

from rich.console import Console

err = Console(stderr=True, soft_wrap=True)
out = Console()
