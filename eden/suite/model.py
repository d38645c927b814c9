"""The suite file format: a qualification matrix of scenarios x hardware profiles.

These pydantic models *are* the file format (every field is a YAML key), validated like scenario
files with ``file:line:col`` errors. :mod:`eden.suite.load` adds the checks a schema cannot express
(files that must exist, profiles that must be known, excludes that must match something).

.. code-block:: yaml

    name: qualification
    scenarios: [../scenarios/*.yaml]      # relative to this file; globs allowed
    profiles: all                          # or a list; omitted: each scenario keeps its own fleet
    replications: 2                        # seeds: scenario seed + 0, + 1 (or seeds: [..])
    exclude:
      - {scenario: attestation-tamper, profile: rpi4-class, reason: no TPM}
    include:
      - {scenario: app-deploy-resources, profile: gateway-arm}
    criteria:
      thresholds:
        - {metric: onboarding.time.p95, max: 60s}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eden.scenario.model import ConfigValue, Name, Quantity, Seed
from eden.units import Duration

OWN = "own"
"""The profile label of an entry that keeps the scenario's own fleet (in entry ids and tables)."""


class Base(BaseModel):
    """Unknown keys are errors with a did-you-mean hint, as in scenario files."""

    model_config = ConfigDict(extra="forbid")


class Overrides(Base):
    """Changes applied to a scenario for one suite entry (checked like the scenario itself)."""

    seed: Seed | None = None
    """Base seed; replication r runs with seed + r."""
    duration: Duration | None = None
    """Replaces the scenario's ``duration``."""
    config_items: dict[str, ConfigValue] = Field(default_factory=dict)
    """Merged into the scenario's ``controller.config_items`` (these win)."""


class ScenarioRef(Base):
    """A ``scenarios:`` item with overrides: ``{file: ../scenarios/x.yaml, overrides: {...}}``."""

    file: str
    overrides: Overrides = Field(default_factory=Overrides)


class Include(Base):
    """One extra matrix entry."""

    scenario: str
    """A scenario of this suite (its name or file stem) or a path relative to the suite file."""
    profile: str | None = None
    """A hardware profile substituted into the fleet; omitted: the scenario's own fleet."""
    overrides: Overrides = Field(default_factory=Overrides)


class Exclude(Base):
    """Drop matrix entries (scenario and/or profile; ``scenario`` may be a glob), with the reason."""

    scenario: str | None = None
    profile: str | None = None
    reason: Annotated[str, Field(min_length=1)]

    @model_validator(mode="after")
    def _names_something(self) -> "Exclude":
        if self.scenario is None and self.profile is None:
            raise ValueError("an exclude needs 'scenario', 'profile' or both")
        return self


class Threshold(Base):
    """A pass criterion on one numeric metric of each entry's summary (e.g. onboarding.time.p95)."""

    metric: str
    max: Quantity | None = None
    min: Quantity | None = None
    name: str | None = None
    scenarios: list[str] | None = None
    """Only for these scenarios (names or globs); default: every entry."""
    profiles: list[str] | None = None
    """Only for entries on these profiles (``own`` for own-fleet entries); default: every entry."""

    @model_validator(mode="after")
    def _bound(self) -> "Threshold":
        if self.max is None and self.min is None:
            raise ValueError("a threshold needs 'max' or 'min'")
        return self


class Criteria(Base):
    """When an entry passes. An entry that fails a criterion is ``failed`` (a product failure)."""

    all_expectations: bool = True
    """Every expectation of the scenario must pass. ``false``: only the thresholds decide."""
    thresholds: list[Threshold] = Field(default_factory=list)


class Suite(Base):
    """A qualification or fleet suite: which scenarios run where, how often, and what passing means."""

    name: Name
    description: str = ""
    backend: str = "sim"
    """``eden qualify --backend`` overrides it."""
    scenarios: list[str | ScenarioRef] = Field(default_factory=list)
    """Scenario files relative to the suite file; globs allowed."""
    profiles: Literal["all"] | list[str] | None = None
    """Profiles to substitute into every fleet entry: a list, ``all``, or omitted (own fleets)."""
    include: list[Include] = Field(default_factory=list)
    exclude: list[Exclude] = Field(default_factory=list)
    overrides: Overrides = Field(default_factory=Overrides)
    """Overrides for every entry (a scenario's or an include's own overrides win)."""
    replications: Annotated[int, Field(ge=1)] = 1
    seeds: Annotated[list[Seed], Field(min_length=1)] | None = None
    """Explicit seeds, one replication each (instead of scenario seed + r)."""
    criteria: Criteria = Field(default_factory=Criteria)
