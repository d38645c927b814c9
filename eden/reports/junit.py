"""``junit.xml``: one ``<testcase>`` per suite entry, for any CI (Jenkins, GitLab, GitHub Actions).

* classname ``<suite>.<scenario>``, name ``<profile> r<replication>``, time = wall seconds;
* a failed entry has one ``<failure>`` (product failure), a broken entry one ``<error>``
  (harness / infrastructure); never both, and ``<skipped>`` is never used;
* ``<properties>`` inside each ``<testcase>`` (profile, backend, seed, replication, devices,
  images) and at the ``<testsuite>`` level (backend, host, python, package versions).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from eden.reports.markdown import controller_answers, failed_expectations, failure_reasons, fmt_seconds, profile_label, profile_of
from eden.reports.model import EntryResult, SuiteResults


def testcase_name(entry: EntryResult) -> str:
    """``<profile> r<replication>`` (``own fleet r0`` when the scenario keeps its fleet)."""
    return f"{profile_label(profile_of(entry))} r{entry.replication}"


def _properties(parent: ET.Element, props: dict[str, str]) -> None:
    node = ET.SubElement(parent, "properties")
    for name, value in props.items():
        ET.SubElement(node, "property", name=name, value=str(value))


def _system_out(entry: EntryResult) -> str:
    lines = [f"{entry.scenario} on {profile_of(entry)} ({entry.backend}, seed {entry.seed}): {entry.verdict}"]
    for step in entry.steps:
        start, stop = step.get("start"), step.get("stop")
        when = f"{float(start):.1f}s..{float(stop):.1f}s" if start is not None and stop is not None else "-"
        lines.append(f"  step {int(step.get('index', 0)) + 1} {step.get('name')}: {step.get('status')} [{when}]")
    for exp in entry.expectations:
        lines.append(f"  expect {exp.get('name')}: {exp.get('status')}")
    for key, stats in entry.timings.items():
        if stats.get("count"):
            lines.append(f"  {key}: p50 {fmt_seconds(stats.get('p50'))}, p95 {fmt_seconds(stats.get('p95'))}, n={stats.get('count')}")
    if answers := controller_answers(entry):
        lines.append(f"  controller answers: {answers}")
    if entry.run_dir:
        lines.append(f"  run folder: {entry.run_dir}")
    return "\n".join(lines) + "\n"


def build_junit(results: SuiteResults) -> ET.ElementTree:
    """The JUnit XML tree (root ``<testsuites>``) for the suite results."""
    counts = results.counts()
    total_time = sum(e.wall_seconds for e in results.entries)
    root = ET.Element(
        "testsuites",
        name=f"eden {results.suite}",
        tests=str(len(results.entries)),
        failures=str(counts["failed"]),
        errors=str(counts["broken"]),
        skipped="0",
        time=f"{results.wall_seconds or total_time:.3f}",
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=results.suite,
        tests=str(len(results.entries)),
        failures=str(counts["failed"]),
        errors=str(counts["broken"]),
        skipped="0",
        time=f"{total_time:.3f}",
        timestamp=results.started,
        hostname=results.host or "-",
    )
    suite_props = {
        "suite": results.suite,
        "suite_file": results.suite_file,
        "backend": results.backend,
        "host": results.host,
        "platform": results.platform,
        "python": results.python,
        "started": results.started,
        "command": results.command,
        "interrupted": results.interrupted,
    }
    suite_props.update({f"version.{k}": v for k, v in sorted(results.versions.items())})
    _properties(suite, {k: v for k, v in suite_props.items() if v})
    for entry in results.entries:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{entry.suite}.{entry.scenario}",
            name=testcase_name(entry),
            time=f"{entry.wall_seconds:.3f}",
            file=entry.scenario_file,
        )
        props = {
            "profile": profile_of(entry),
            "backend": entry.backend,
            "seed": str(entry.seed),
            "replication": str(entry.replication),
            "devices": str(entry.devices),
            "verdict": entry.verdict,
        }
        props.update({f"image.{k}": str(v) for k, v in entry.versions.items()})
        props.update({f"place.{d}": p for d, p in entry.places.items()})
        if entry.simulated_seconds is not None:
            props["simulated_seconds"] = f"{entry.simulated_seconds:g}"
        _properties(case, props)
        reasons = failure_reasons(entry)
        if entry.verdict == "failed":
            node = ET.SubElement(case, "failure", message="; ".join(reasons)[:1000], type="ProductFailure")
            detail = []
            for exp in failed_expectations(entry):
                detail.append(f"{entry.scenario_file}:{exp.get('line', '?')} {exp.get('where', '?')}: {exp.get('name')}")
            node.text = "\n".join(reasons + [""] + detail)
        elif entry.verdict == "broken":
            node = ET.SubElement(case, "error", message=(entry.error or "harness error")[:1000], type="InfrastructureError")
            node.text = "\n".join(reasons)
        ET.SubElement(case, "system-out").text = _system_out(entry)
    ET.indent(root, space="  ")
    return ET.ElementTree(root)


def write_junit(results: SuiteResults, path: Path) -> Path:
    """Write ``junit.xml`` to ``path`` and return it."""
    tree = build_junit(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
