"""Loading a suite file: YAML -> validated :class:`Suite` -> the expanded matrix of entries.

Every problem with the suite itself (unknown scenario files, profiles, metrics, config items,
excludes that match nothing, duplicate entries) is reported at once as ``file:line:col`` issues,
like scenario files. A matrix cell whose *substituted* scenario is invalid (for example a step
naming a port the profile lacks) does not invalidate the suite: its entries carry the validation
message in :attr:`MatrixEntry.invalid` and are reported as broken without running.
"""

from __future__ import annotations

import difflib
import fnmatch
import glob
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eden.backends.registry import REGISTRY, backend_capabilities, runnable_backends
from eden.errors import InvalidInput, Issue, did_you_mean, format_issues, issue_at, validate_model
from eden.profiles import load_profiles
from eden.reports.model import features_of
from eden.scenario import metric_names
from eden.scenario.load import LoadedScenario, config_item_problems, config_item_warnings, load_scenario
from eden.scenario.model import Scenario
from eden.suite.model import OWN, Exclude, Overrides, ScenarioRef, Suite
from eden.yamlsrc import Located, load_yaml_file, plain

__all__ = ["Excluded", "LoadedSuite", "MatrixEntry", "entry_id", "load_entry", "load_suite", "apply_overrides"]

DataPath = tuple[str | int, ...]
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_LISTED = 12


@dataclass(frozen=True)
class MatrixEntry:
    """One run of the suite: a scenario on a profile (or its own fleet), one replication."""

    id: str
    """``<scenario>--<profile or 'own'>--r<n>``: unique in the suite, safe as a folder name."""
    scenario: str
    file: str
    """Absolute path of the scenario file."""
    profile: str | None
    replication: int
    seed: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Plain-data overrides still to apply at load: ``duration``, ``config_items``."""
    features: tuple[str, ...] = ()
    invalid: str | None = None
    """Why this entry cannot run (its substituted scenario does not validate); None when fine."""

    @property
    def cell(self) -> tuple[str, str]:
        """(scenario, profile or 'own'): the matrix cell."""
        return self.scenario, self.profile or OWN


@dataclass(frozen=True)
class Excluded:
    """A matrix cell left out on purpose, with the suite's reason (shown in tables and reports)."""

    scenario: str
    profile: str | None
    reason: str


@dataclass
class LoadedSuite:
    suite: Suite
    path: Path
    located: Located
    backend: str
    entries: list[MatrixEntry]
    excluded: list[Excluded]
    scenarios: list[str]
    """Scenario names in suite order (table rows)."""
    profiles: list[str]
    """Profile columns in suite order (``own`` for own-fleet entries)."""
    warnings: list[Issue] = field(default_factory=list)
    """Unknown config items in the suite's overrides and its scenario files (EVE ignores them)."""

    def thresholds_for(self, entry: MatrixEntry) -> list[Any]:
        """The suite's thresholds that apply to ``entry``."""
        out = []
        for t in self.suite.criteria.thresholds:
            if t.scenarios is not None and not any(fnmatch.fnmatchcase(entry.scenario, p) for p in t.scenarios):
                continue
            if t.profiles is not None and (entry.profile or OWN) not in t.profiles:
                continue
            out.append(t)
        return out


def entry_id(scenario: str, profile: str | None, replication: int) -> str:
    """``<scenario>--<profile or 'own'>--r<n>``, with anything unsafe in a file name replaced."""
    parts = [_SAFE.sub("_", scenario), _SAFE.sub("_", profile or OWN), f"r{replication}"]
    return "--".join(parts)


def apply_overrides(scenario: Scenario, overrides: Mapping[str, Any]) -> None:
    """Apply plain-data suite overrides (``duration``, ``config_items``, ``seed``) to a scenario."""
    if overrides.get("duration") is not None:
        scenario.duration = float(overrides["duration"])
    if overrides.get("seed") is not None:
        scenario.seed = int(overrides["seed"])
    items = overrides.get("config_items") or {}
    if items:
        scenario.controller.config_items = {**scenario.controller.config_items, **items}


def load_entry(entry: MatrixEntry, backend: str) -> LoadedScenario:
    """Load the scenario of one entry for ``backend``: profile substituted, overrides applied."""
    caps, max_devices = backend_capabilities(backend)
    overrides = dict(entry.overrides)
    return load_scenario(
        entry.file,
        backend=backend,
        capabilities=caps,
        max_devices=max_devices,
        fleet_profile=entry.profile,
        adjust=(lambda sc: apply_overrides(sc, overrides)) if overrides else None,
    )


def load_suite(
    path: str | Path,
    *,
    backend: str | None = None,
    only_profiles: Sequence[str] | None = None,
    need_runnable: bool = True,
) -> LoadedSuite:
    """Load and check a suite file and expand its matrix; raise InvalidInput listing every problem.

    ``backend`` overrides the suite's own; ``only_profiles`` keeps the entries on those profiles
    (and own-fleet entries whose fleet uses one of them); ``need_runnable`` also refuses backends
    that are declared but not available in this build.
    """
    path = Path(path)
    located = load_yaml_file(path)
    suite = validate_model(Suite, located)
    return _SuiteChecker(suite, located, path).run(backend, only_profiles, need_runnable)


# --------------------------------------------------------------------------------------------------


def _did_you_mean(word: str, choices: Iterable[str], what: str) -> str:
    return did_you_mean(word, choices, what, max_listed=_MAX_LISTED)


@dataclass
class _Source:
    """One scenario file of the suite, loaded with its own fleet."""

    file: Path
    loaded: LoadedScenario
    overrides: Overrides
    where: DataPath


def _merge(*layers: Overrides) -> dict[str, Any]:
    """Overrides as plain data, later layers winning; config_items merged key by key."""
    out: dict[str, Any] = {}
    items: dict[str, Any] = {}
    for layer in layers:
        if layer.seed is not None:
            out["seed"] = layer.seed
        if layer.duration is not None:
            out["duration"] = layer.duration
        items.update(plain(dict(layer.config_items)))
    if items:
        out["config_items"] = items
    return out


class _SuiteChecker:
    def __init__(self, suite: Suite, located: Located, path: Path) -> None:
        self.suite = suite
        self.located = located
        self.path = path
        self.base = path.resolve().parent
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []
        self.known_profiles = list(load_profiles())
        self.sources: dict[str, _Source] = {}  # by scenario name, suite order

    def error(self, where: DataPath, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.issues.append(issue_at(self.located, where, message, hint, key=key))

    def fail_if_issues(self) -> None:
        if self.issues:
            unique = {(i.file, i.line, i.col, i.message, i.hint or ""): i for i in self.issues}
            raise InvalidInput([unique[k] for k in sorted(unique)])

    # ------------------------------------------------------------------------------ driver

    def run(self, backend: str | None, only_profiles: Sequence[str] | None, need_runnable: bool) -> LoadedSuite:
        backend = self.backend(backend, need_runnable)
        self.overrides(self.suite.overrides, ("overrides",))
        for i, ref in enumerate(self.suite.scenarios):
            self.scenario_item(i, ref, backend)
        profiles = self.profiles()
        blocking = bool(self.issues)  # the matrix needs the files and profiles
        self.seeds()
        self.metrics()
        if blocking:
            self.fail_if_issues()

        cells = self.matrix(profiles)
        cells = self.excludes(cells, profiles)
        cells += self.includes(cells, backend)
        self.threshold_filters()
        self.fail_if_issues()
        if not cells:
            self.error((), "the suite has no entries", "list scenario files under 'scenarios:' or 'include:'")
            self.fail_if_issues()

        entries = self.expand(cells, backend)
        if only_profiles is not None:
            entries = self.only(entries, only_profiles)
        self.fail_if_issues()
        columns = list(dict.fromkeys(e.profile or OWN for e in entries))
        used = {e.scenario for e in entries}
        rows = [name for name in self.sources if name in used]
        return LoadedSuite(self.suite, self.path, self.located, backend, entries, self.excluded, rows, columns, self.warnings)

    # ------------------------------------------------------------------------------ parts

    def backend(self, override: str | None, need_runnable: bool) -> str:
        name = override or self.suite.backend
        if name not in REGISTRY:
            self.error(("backend",), f"unknown backend '{name}'", _did_you_mean(name, REGISTRY, "backends"))
            self.fail_if_issues()
        if need_runnable and name not in runnable_backends():
            where = "--backend" if override else "backend"
            self.error(
                ("backend",),
                f"backend '{name}' ({where}) is declared but not available in this build",
                f"runnable backends: {', '.join(runnable_backends())}",
            )
            self.fail_if_issues()
        return name

    def overrides(self, ov: Overrides, where: DataPath) -> None:
        for key, message, hint, at_key in config_item_problems(ov.config_items):
            self.error((*where, "config_items", key), message, hint, key=at_key)
        for key, message, hint in config_item_warnings(ov.config_items):
            found = issue_at(self.located, (*where, "config_items", key), message, hint, key=True)
            self.warnings.append(replace(found, severity="warning"))

    def scenario_item(self, i: int, ref: str | ScenarioRef, backend: str) -> None:
        pattern = ref if isinstance(ref, str) else ref.file
        where: DataPath = ("scenarios", i) if isinstance(ref, str) else ("scenarios", i, "file")
        overrides = Overrides() if isinstance(ref, str) else ref.overrides
        if not isinstance(ref, str):
            self.overrides(ref.overrides, ("scenarios", i, "overrides"))
        files = self.resolve(pattern, where)
        for file in files:
            self.add_source(file, overrides, where, backend)

    def resolve(self, pattern: str, where: DataPath) -> list[Path]:
        """Files a ``scenarios:`` item names (relative to the suite file), or an error."""
        full = (self.base / pattern) if not Path(pattern).is_absolute() else Path(pattern)
        if glob.has_magic(pattern):
            files = sorted(Path(p) for p in glob.glob(str(full)) if Path(p).is_file())
            if not files:
                self.error(where, f"no scenario file matches '{pattern}'", f"patterns are relative to {self.base}")
            return files
        if not full.is_file():
            siblings = sorted(p.name for p in full.parent.glob("*.y*ml")) if full.parent.is_dir() else []
            close = difflib.get_close_matches(full.name, siblings, n=1, cutoff=0.6)
            if close:
                hint = f"did you mean '{str(Path(pattern).parent / close[0]).removeprefix('./')}'?"
            elif not full.parent.is_dir():
                hint = f"folder {full.parent} does not exist (paths are relative to the suite file)"
            else:
                hint = f"files there: {', '.join(siblings[:_MAX_LISTED]) or 'none'}"
            self.error(where, f"scenario file '{pattern}' not found", hint)
            return []
        return [full]

    def add_source(self, file: Path, overrides: Overrides, where: DataPath, backend: str) -> _Source | None:
        file = file.resolve()
        for src in self.sources.values():
            if src.file == file:
                return src  # matched twice (a glob and a path): keep the first
        caps, max_devices = backend_capabilities(backend)
        try:
            loaded = load_scenario(file, backend=backend, capabilities=caps, max_devices=max_devices)
        except InvalidInput as exc:
            self.issues.extend(exc.issues)
            return None
        self.warnings.extend(loaded.warnings)
        name = loaded.scenario.name
        if name in self.sources:
            self.error(
                where,
                f"scenario name '{name}' is used by two files: {self.sources[name].file} and {file}",
                "entry ids are made from scenario names; rename one of them",
            )
            return None
        src = _Source(file, loaded, overrides, where)
        self.sources[name] = src
        return src

    def profiles(self) -> list[str | None]:
        """The matrix columns: profile names, or [None] for own fleets."""
        chosen = self.suite.profiles
        if chosen is None:
            return [None]
        if chosen == "all":
            return list(self.known_profiles)
        seen: set[str] = set()
        out: list[str | None] = []
        for j, name in enumerate(chosen):
            if name not in self.known_profiles:
                self.error(("profiles", j), f"unknown hardware profile '{name}'", _did_you_mean(name, self.known_profiles, "profiles"))
            elif name in seen:
                self.error(("profiles", j), f"profile '{name}' is listed twice")
            else:
                seen.add(name)
                out.append(name)
        return out

    def seeds(self) -> None:
        s = self.suite
        if s.seeds is not None and "replications" in s.model_fields_set and s.replications != len(s.seeds):
            self.error(
                ("replications",),
                f"replications: {s.replications} but {len(s.seeds)} seed(s) are listed",
                "give either 'replications' or 'seeds' (one replication per seed)",
            )

    def matrix(self, profiles: list[str | None]) -> list[tuple[_Source, str | None, Overrides | None]]:
        return [(src, p, None) for src in self.sources.values() for p in profiles]

    def names_of(self, src: _Source) -> set[str]:
        return {src.loaded.scenario.name, src.file.stem}

    def excludes(self, cells: list[tuple[_Source, str | None, Overrides | None]], profiles: list[str | None]) -> list[Any]:
        self.excluded: list[Excluded] = []
        keep = list(cells)
        for i, ex in enumerate(self.suite.exclude):
            if not self.exclude_names_ok(i, ex):
                continue
            hit = [c for c in keep if self.exclude_matches(ex, c[0], c[1])]
            if not hit:
                rows = ", ".join(self.sources) or "none"
                cols = ", ".join(p or OWN for p in profiles) or "none"
                self.error(
                    ("exclude", i),
                    "this exclude matches no entry of the matrix",
                    f"the matrix has scenarios {rows} and profiles {cols}"
                    + (" (earlier excludes already removed some entries)" if self.excluded else ""),
                    key=True,
                )
                continue
            for c in hit:
                keep.remove(c)
                self.excluded.append(Excluded(c[0].loaded.scenario.name, c[1], ex.reason))
        return keep

    def exclude_names_ok(self, i: int, ex: Exclude) -> bool:
        ok = True
        if ex.profile is not None and ex.profile != OWN and ex.profile not in self.known_profiles:
            self.error(("exclude", i, "profile"), f"unknown hardware profile '{ex.profile}'", _did_you_mean(ex.profile, self.known_profiles, "profiles"))
            ok = False
        if ex.scenario is not None and not any(self.scenario_matches(ex.scenario, s) for s in self.sources.values()):
            names = [n for s in self.sources.values() for n in sorted(self.names_of(s))]
            self.error(("exclude", i, "scenario"), f"no scenario of this suite is called '{ex.scenario}'", _did_you_mean(ex.scenario, names, "scenarios"))
            ok = False
        return ok

    def scenario_matches(self, pattern: str, src: _Source) -> bool:
        if any(fnmatch.fnmatchcase(n, pattern) for n in self.names_of(src)):
            return True
        candidate = (self.base / pattern) if not Path(pattern).is_absolute() else Path(pattern)
        return candidate.resolve() == src.file

    def exclude_matches(self, ex: Exclude, src: _Source, profile: str | None) -> bool:
        if ex.scenario is not None and not self.scenario_matches(ex.scenario, src):
            return False
        return ex.profile is None or ex.profile == (profile or OWN)

    def includes(self, cells: list[Any], backend: str) -> list[Any]:
        added: list[Any] = []
        for i, inc in enumerate(self.suite.include):
            self.overrides(inc.overrides, ("include", i, "overrides"))
            src = next((s for s in self.sources.values() if inc.scenario in self.names_of(s)), None)
            if src is None:
                full = (self.base / inc.scenario) if not Path(inc.scenario).is_absolute() else Path(inc.scenario)
                if full.is_file():
                    src = self.add_source(full, Overrides(), ("include", i, "scenario"), backend)
                    if src is None:
                        continue
                else:
                    names = [n for s in self.sources.values() for n in sorted(self.names_of(s))]
                    close = difflib.get_close_matches(inc.scenario, names, n=1, cutoff=0.6)
                    hint = f"did you mean '{close[0]}'?" if close else (
                        f"give a scenario of this suite ({', '.join(names[:_MAX_LISTED])}) or a file path relative to the suite"
                        if names else "give a scenario file path relative to the suite file"
                    )
                    self.error(("include", i, "scenario"), f"unknown scenario '{inc.scenario}': not in this suite and no such file", hint)
                    continue
            profile = inc.profile
            if profile == OWN:
                profile = None
            if profile is not None and profile not in self.known_profiles:
                self.error(("include", i, "profile"), f"unknown hardware profile '{profile}'", _did_you_mean(profile, self.known_profiles, "profiles"))
                continue
            dup = [c for c in cells + added if c[0] is src and c[1] == profile]
            if dup:
                self.error(
                    ("include", i),
                    f"'{src.loaded.scenario.name}' on {profile or 'its own fleet'} is already in the matrix",
                    "drop this include, or exclude the matrix entry first",
                    key=True,
                )
                continue
            added.append((src, profile, inc.overrides))
            name = src.loaded.scenario.name
            self.excluded = [x for x in self.excluded if (x.scenario, x.profile) != (name, profile)]
        return added

    def metrics(self) -> None:
        for i, t in enumerate(self.suite.criteria.thresholds):
            at: DataPath = ("criteria", "thresholds", i)
            name = t.metric
            if name in metric_names.DISTRIBUTIONS:
                self.error((*at, "metric"), f"metric '{name}' is a distribution, not a number", f"add a statistic, e.g. '{name}.p95'")
            elif not metric_names.is_known(name):
                close = metric_names.close_names(name)
                hint = ("did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close else "see eden/scenario/metric_names.py"
                self.error((*at, "metric"), f"unknown metric '{name}'", hint)
            elif not metric_names.is_numeric(name):
                self.error((*at, "metric"), f"metric '{name}' is not a number and cannot be compared with min/max")

    def threshold_filters(self) -> None:
        for i, t in enumerate(self.suite.criteria.thresholds):
            at: DataPath = ("criteria", "thresholds", i)
            for j, pattern in enumerate(t.scenarios or []):
                if not any(fnmatch.fnmatchcase(n, pattern) for s in self.sources.values() for n in self.names_of(s)):
                    self.error((*at, "scenarios", j), f"no scenario of this suite matches '{pattern}'", _did_you_mean(pattern, self.sources, "scenarios"))
            for j, profile in enumerate(t.profiles or []):
                if profile != OWN and profile not in self.known_profiles:
                    self.error((*at, "profiles", j), f"unknown hardware profile '{profile}'", _did_you_mean(profile, [*self.known_profiles, OWN], "profiles"))

    def expand(self, cells: list[tuple[_Source, str | None, Overrides | None]], backend: str) -> list[MatrixEntry]:
        s = self.suite
        entries: list[MatrixEntry] = []
        ids: set[str] = set()
        for src, profile, extra in cells:
            merged = _merge(s.overrides, src.overrides, *( [extra] if extra is not None else []))
            base_seed = int(merged.pop("seed", src.loaded.scenario.seed))
            seeds = list(s.seeds) if s.seeds is not None else [base_seed + r for r in range(s.replications)]
            name = src.loaded.scenario.name
            template = MatrixEntry("", name, str(src.file), profile, 0, 0, merged, tuple(features_of(src.loaded.scenario)))
            invalid: str | None = None
            if profile is not None or merged:
                try:
                    loaded = load_entry(template, backend)
                    template = _replace(template, features=tuple(features_of(loaded.scenario)))
                except InvalidInput as exc:
                    where = f"on profile '{profile}'" if profile else "with the suite's overrides"
                    invalid = f"scenario '{name}' is not valid {where}:\n{format_issues(exc.issues)}"
            for r, seed in enumerate(seeds):
                eid = entry_id(name, profile, r)
                if eid in ids:  # only reachable when two names sanitise to the same id
                    self.error(("scenarios",), f"two entries would share the id '{eid}'", "rename one of the scenarios", key=True)
                    continue
                ids.add(eid)
                entries.append(_replace(template, id=eid, replication=r, seed=seed, invalid=invalid))
        return entries

    def only(self, entries: list[MatrixEntry], wanted: Sequence[str]) -> list[MatrixEntry]:
        keep_set = set(wanted)
        out = []
        for e in entries:
            if e.profile is not None:
                if e.profile in keep_set:
                    out.append(e)
            elif keep_set & set(self.sources[e.scenario].loaded.profiles):
                out.append(e)
        if not out:
            present = sorted({p for e in entries for p in ([e.profile] if e.profile else self.sources[e.scenario].loaded.profiles)})
            self.error(
                ("profiles",) if self.located.has(("profiles",)) else (),
                f"no entry of suite '{self.suite.name}' runs on {', '.join(wanted)}",
                f"its entries run on: {', '.join(present) or 'nothing'}",
                key=True,
            )
        return out


def _replace(entry: MatrixEntry, **changes: Any) -> MatrixEntry:
    from dataclasses import replace

    return replace(entry, **changes)
