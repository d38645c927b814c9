"""The layers' import rules, read from the source with :mod:`ast` (nothing is imported).

``eve/`` is EVE's rule set: it must stand alone, so the simulator and the harness can both build
on it. ``simulator/`` is a harness-free engine. ``eden/controller`` is a real controller, which has
no capacity model, so it builds on ``eve/`` and never on the simulator.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``import a.b``, ``from a.b import c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """``file: module`` for each import of a ``forbidden`` top-level package under ``package``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in sorted(_imported_modules(path)):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)}: {module}")
    return found


def test_imported_modules_sees_both_import_forms(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import os.path\nfrom eden.x import y\nfrom . import z\n", encoding="utf-8")
    assert _imported_modules(src) == {"os.path", "eden.x"}


def test_eve_and_simulator_layers() -> None:
    """eve/ imports neither eden nor simulator; simulator/ does not import eden."""
    assert _violations("eve", ("eden", "simulator")) == []
    assert _violations("simulator", ("eden",)) == []


def test_real_controller_builds_on_eve_not_on_the_simulator() -> None:
    assert _violations("eden/controller", ("simulator",)) == []
