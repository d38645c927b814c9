"""The import rules of the real-time layers, read from the source with ``ast``.

``eden/runtime`` sits below ``eden/qemu`` and ``eden/agent``; those two sit below the backends.
An import that points upward would tie a board's console or an agent to one backend's code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every absolute import in a package."""
    found = []
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((str(path.relative_to(ROOT)), node.module))
                found += [(str(path.relative_to(ROOT)), f"{node.module}.{a.name}") for a in node.names]
    return found


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{f}: {m}" for f, m in _imports(package) if any(m == x or m.startswith(x + ".") for x in forbidden)]


@pytest.mark.parametrize("package", ["eden.qemu", "eden.agent"])
def test_qemu_and_agent_import_no_backend(package: str) -> None:
    assert _violations(package, ("eden.backends",)) == []


def test_runtime_imports_nothing_above_it() -> None:
    assert _violations("eden.runtime", ("eden.backends", "eden.qemu", "eden.agent", "eden.cli")) == []


def test_the_check_sees_an_upward_import() -> None:
    found = _imports("eden.backends")
    assert any(m.startswith("eden.runtime") for _, m in found)
