"""Loading a lab file: YAML -> validated :class:`LabFile` -> places checked against the hardware profiles.

Every problem is reported at once, each at ``file:line:col`` with a hint, the way scenario and
profile files are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from eden.errors import InvalidInput, Issue, explain_validation_error, issue_at
from eden.lab.model import AT_KEY, LabFile, Place
from eden.profiles import HwProfile, load_profiles
from eden.yamlsrc import Located, load_yaml_file

DEFAULT_DB = ".eden-lab.sqlite"
SHIPPED_SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
GENERIC_HEALTH = SHIPPED_SCENARIOS / "health.yaml"
_MAX_LISTED = 12


@dataclass(frozen=True)
class LoadedLab:
    """A validated lab file, where it came from, and the paths it names resolved."""

    path: Path
    lab: LabFile
    located: Located
    db_path: Path
    """The lease store: ``leases.db`` relative to the lab file's directory, or .eden-lab.sqlite there."""

    @property
    def root(self) -> Path:
        """The lab file's directory: relative paths in the file are relative to it, not to the shell's cwd."""
        return self.path.parent

    def resolve(self, path: str) -> Path:
        """A path written in the lab file, as a path on this host."""
        return _resolve(self.root, path)

    @property
    def names(self) -> list[str]:
        return list(self.lab.places)

    def place(self, name: str) -> Place:
        """The place called ``name``; InvalidInput (exit 2) naming the known places otherwise."""
        found = self.lab.places.get(name)
        if found is None:
            raise InvalidInput(issue_at(self.located, ("places",), f"unknown place '{name}' in lab '{self.lab.lab}'",
                                        _known(name, self.names, "places"), key=True))
        return found

    def health_scenario(self, profile: str) -> Path:
        """The health scenario of places on ``profile``: health.scenarios, else
        scenarios/health-<profile>.yaml beside the lab file, else eden's own for that profile, else
        eden's generic ``scenarios/health.yaml`` (which the health gate runs with the place's profile)."""
        if profile in self.lab.health.scenarios:
            return self.resolve(self.lab.health.scenarios[profile])
        beside = self.resolve(f"scenarios/health-{profile}.yaml")
        shipped = SHIPPED_SCENARIOS / f"health-{profile}.yaml"
        for candidate in (beside, shipped):
            if candidate.is_file():
                return candidate
        return SHIPPED_SCENARIOS / "health.yaml"


def _resolve(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _known(word: str, names: list[str], what: str) -> str:
    """Close match first, then the names themselves: a lab has few places and profiles, so list them."""
    import difflib

    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    shown = ", ".join(names[:_MAX_LISTED]) + (", ..." if len(names) > _MAX_LISTED else "")
    listed = f"known {what}: {shown}" if names else f"there are no {what}"
    return f"did you mean '{close[0]}'? {listed}" if close else listed


def _validate(located: Located) -> LabFile:
    """validate_model, except that a power/console block with no or several kinds, or beside ``labgrid:``,
    points at its key."""
    try:
        return LabFile.model_validate(located.data)
    except ValidationError as exc:
        problems = explain_validation_error(exc, LabFile, located.data)
        issues = {issue_at(located, p.path, p.message, p.hint, key=p.at_key or p.message.startswith(AT_KEY))
                  for p in problems}
        raise InvalidInput(sorted(issues, key=lambda i: (i.line, i.col, i.message))) from None


def check_lab(lab: LabFile, located: Located, profiles: Mapping[str, HwProfile]) -> list[Issue]:
    """The checks a schema cannot make: every profile a place or a health scenario names exists."""
    known = list(profiles)
    issues = []
    for name, place in lab.places.items():
        if place.profile not in profiles:
            issues.append(issue_at(located, ("places", name, "profile"), f"unknown hardware profile '{place.profile}'",
                                   _known(place.profile, known, "profiles")))
    for profile in lab.health.scenarios:
        if profile not in profiles:
            issues.append(issue_at(located, ("health", "scenarios", profile), f"unknown hardware profile '{profile}'",
                                   _known(profile, known, "profiles"), key=True))
    return issues


def load_lab(path: Path, *, profiles: Mapping[str, HwProfile] | None = None) -> LoadedLab:
    """Load and check a lab file; InvalidInput (exit 2) listing every problem at its position.

    ``profiles`` defaults to eden's hardware profiles ($EDEN_PROFILES_DIR or hw_profiles/)."""
    path = Path(path)
    located = load_yaml_file(path)
    if not isinstance(located.data, Mapping):
        raise InvalidInput(issue_at(located, (), "a lab file is a mapping (lab:, controller:, places:, ...)",
                                    "see docs/lab.md for an example"))
    lab = _validate(located)
    issues = check_lab(lab, located, profiles if profiles is not None else load_profiles())
    if issues:
        raise InvalidInput(issues)
    db = _resolve(path.parent, lab.leases.db or DEFAULT_DB)
    return LoadedLab(path, lab, located, db)
