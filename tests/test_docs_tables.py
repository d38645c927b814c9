"""The tables of docs/scenario-language.md that restate the code are checked against it, so they cannot drift.

On a failure the message carries the table as the code has it: paste it into the doc.
"""

from __future__ import annotations

import re
from pathlib import Path

from eden.backends.registry import REGISTRY, backend_actions, refused_actions
from eden.limits import LIMITS
from eden.scenario.metric_names import ANSWER_STATUSES
from eden.scenario.model import ACTIONS

DOC = Path(__file__).resolve().parents[1] / "docs" / "scenario-language.md"


def _table_after(marker: str) -> list[str]:
    """The Markdown table that follows the line containing ``marker``."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    table = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            if table:
                break
            continue
        table.append(line)
    return table


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]  # '\|' is a pipe in a cell


def backends_table() -> list[str]:
    rows = ["| backend | runnable | max devices | refused at validation |", "|---|---|---|---|"]
    for name, entry in REGISTRY.items():
        refused = [a for a in ACTIONS if a not in backend_actions(name)]
        runnable = "yes" if entry.runnable else "no (planned)"
        most = "unlimited" if entry.max_devices is None else str(entry.max_devices)
        rows.append(f"| `{name}` | {runnable} | {most} | {', '.join(f'`{a}`' for a in refused) or '–'} |")
    return rows


def limits_table() -> list[str]:
    rows = ["| limit | default | variable |", "|---|---|---|"]
    rows += [f"| {spec.what} | {spec.default:,} | `{spec.env}` |" for spec in LIMITS.values()]
    return rows


def test_backends_table_matches_the_code() -> None:
    expected = backends_table()
    assert _table_after("backends table:") == expected, "docs/scenario-language.md should have:\n" + "\n".join(expected)


def test_backends_table_names_what_qemu_and_emulated_refuse() -> None:
    rows = {_cells(r)[0]: _cells(r) for r in _table_after("backends table:")[2:]}
    assert "`controller_503`" not in rows["`emulated`"][3] and "`hang`" not in rows["`emulated`"][3]
    assert "`controller_503`" not in rows["`qemu`"][3] and "`refuse_device_certs`" not in rows["`qemu`"][3]
    assert rows["`emulated`"][1] == rows["`qemu`"][1] == "yes"
    for action in ("deploy_app", "rollout"):
        assert f"`{action}`" in rows["`qemu`"][3]
    for action in ("hang", "crash", "controller_outage", "reboot"):
        assert f"`{action}`" not in rows["`qemu`"][3] and f"`{action}`" in rows["`board`"][3]


def test_refusal_reasons_are_in_the_doc() -> None:
    text = DOC.read_text()
    for name in REGISTRY:
        for reason in refused_actions(name).values():
            assert reason in text


def test_action_table_matches_the_code() -> None:
    rows = [_cells(r) for r in _table_after("| action | arguments (default) | capability | fault? |")[1:]]
    documented = {re.sub(r"`", "", r[0]): (r[2], r[3]) for r in rows if r[0].startswith("`")}
    expected = {action: (cap, "yes" if fault else "no") for action, (_arg, cap, fault) in ACTIONS.items()}
    assert documented == expected


def test_limits_table_matches_the_code() -> None:
    expected = limits_table()
    assert _table_after("limits table:") == expected, "docs/scenario-language.md should have:\n" + "\n".join(expected)


def test_answer_statuses_match_the_code() -> None:
    (row,) = [r for r in _table_after("| name | meaning |") if r.startswith("| `controller.answers.<status>`")]
    assert re.findall(r"`(\d{3})`", _cells(row)[1]) == list(ANSWER_STATUSES)
