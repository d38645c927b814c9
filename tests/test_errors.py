"""Issue/InvalidInput vocabulary and translation of pydantic errors to file positions."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import pytest
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from eden.errors import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    HintedValueError,
    InfrastructureError,
    InvalidInput,
    Issue,
    format_issues,
    issue_at,
    validate_model,
)
from eden.units import Duration
from eden.yamlsrc import load_yaml_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Strict):
    count: int
    level: Literal["low", "medium", "high"] = "low"
    max_wait: Duration = Field(default=0, alias="max-wait")


class Device(_Strict):
    id: str
    limits: Limits | None = None

    @field_validator("id")
    @classmethod
    def _id_lower(cls, v: str) -> str:
        if v != v.lower():
            raise HintedValueError(f"device id '{v}' must be lower case", f"write '{v.lower()}'")
        return v


class PowerOnArgs(_Strict):
    delay: Duration = 0


class PowerOnStep(_Strict):
    power_on: PowerOnArgs


class WaitStep(_Strict):
    wait: Duration


def _action(value: Any) -> str | None:
    """A step is a single-key mapping; the key names the action."""
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


Step = Annotated[
    Union[Annotated[PowerOnStep, Tag("power_on")], Annotated[WaitStep, Tag("wait")]],
    Discriminator(_action),
]


class Cat(_Strict):
    kind: Literal["cat"]
    meows: int


class Dog(_Strict):
    kind: Literal["dog"]
    barks: int


class Doc(_Strict):
    devices: list[Device] = []
    steps: list[Step] = []
    options: dict[str, Limits] = {}
    pet: Annotated[Union[Cat, Dog], Field(discriminator="kind")] | None = None
    size: int | list[int] = 0


def _issues(text: str) -> list[Issue]:
    with pytest.raises(InvalidInput) as info:
        validate_model(Doc, load_yaml_text(text, "doc.yaml"))
    return info.value.issues


def test_issue_str_and_exit_codes() -> None:
    issue = Issue("a.yaml", 3, 5, "unknown key 'foo'", "did you mean 'for'?")
    assert str(issue) == "a.yaml:3:5: error: unknown key 'foo'\n    hint: did you mean 'for'?"
    assert str(Issue("a.yaml", 1, 1, "bad")) == "a.yaml:1:1: error: bad"
    exc = InvalidInput([issue, Issue("b.yaml", 1, 2, "x")])
    assert str(exc) == format_issues(exc.issues) == str(issue) + "\nb.yaml:1:2: error: x"
    assert InvalidInput(issue).issues == [issue]
    assert (EXIT_OK, EXIT_FAILED, EXIT_INVALID) == (0, 1, 2)
    assert InvalidInput.exit_code == 2 and InfrastructureError.exit_code == 2


def test_valid_document() -> None:
    doc = validate_model(
        Doc, load_yaml_text("devices:\n  - id: a\n    limits: {count: 2, max-wait: 1m}\nsteps:\n  - wait: 10s\n")
    )
    assert doc.devices[0].limits is not None and doc.devices[0].limits.max_wait == 60
    assert isinstance(doc.steps[0], WaitStep) and doc.steps[0].wait == 10


def test_unknown_key_did_you_mean() -> None:
    (issue,) = _issues("devices:\n  - id: a\n    limits:\n      count: 1\n      levle: high\n")
    assert (issue.file, issue.line, issue.col) == ("doc.yaml", 5, 7)
    assert issue.message == "unknown key 'levle'"
    assert issue.hint == "did you mean 'level'?"
    assert str(issue).startswith("doc.yaml:5:7: error: unknown key 'levle'")


def test_unknown_key_lists_allowed_keys_with_aliases() -> None:
    (issue,) = _issues("devices:\n  - id: a\n    limits: {count: 1, zzz: 2}\n")
    assert (issue.line, issue.col) == (3, 24)
    assert issue.hint == "allowed keys: count, level, max-wait"


def test_unknown_key_alias_close_match() -> None:
    (issue,) = _issues("devices:\n  - id: a\n    limits: {count: 1, max_wait: 2}\n")
    assert issue.hint == "did you mean 'max-wait'?"


def test_missing_key_points_at_parent_mapping() -> None:
    (issue,) = _issues("devices:\n  - id: a\n    limits:\n      level: low\n")
    assert issue.message == "missing required key 'count'"
    assert (issue.line, issue.col) == (4, 7)


def test_wrong_type_names_the_key() -> None:
    (issue,) = _issues("devices:\n  - id: a\n    limits:\n      count: ten\n")
    assert issue.message == "'ten' is not a valid integer for 'count'"
    assert (issue.line, issue.col) == (4, 14)


def test_container_type_error() -> None:
    (issue,) = _issues("devices: 5\n")
    assert issue.message == "expected a list for 'devices', got '5'"
    (issue,) = _issues("- 1\n")
    assert issue.message == "expected a mapping at the top level, got a list"
    assert (issue.line, issue.col) == (1, 1)


def test_literal_error_with_hint() -> None:
    (issue,) = _issues("devices:\n  - id: a\n    limits: {count: 1, level: HIGH}\n")
    assert issue.message == "'HIGH' is not one of: low, medium, high"
    assert issue.hint == "did you mean 'high'?"
    assert (issue.line, issue.col) == (3, 31)


def test_validator_message_and_hint() -> None:
    (issue,) = _issues("devices:\n  - id: Dev1\n")
    assert issue.message == "device id 'Dev1' must be lower case"
    assert issue.hint == "write 'dev1'"
    assert (issue.line, issue.col) == (2, 9)


def test_unit_errors_surface_verbatim() -> None:
    (issue,) = _issues("devices:\n  - id: a\n    limits: {count: 1, max-wait: 10 minutes}\n")
    assert issue.message.startswith("'10 minutes' is not a duration; write e.g. 30s")


def test_errors_are_collected_and_sorted() -> None:
    issues = _issues("devices:\n  - id: a\n    limits: {bogus: 1}\n  - id: b\n    colour: red\n")
    assert [(i.line, i.message) for i in issues] == [
        (3, "missing required key 'count'"),
        (3, "unknown key 'bogus'"),
        (5, "unknown key 'colour'"),
    ]


def test_discriminated_union_step_list() -> None:
    text = """\
steps:
  - power_on: {}
  - wait: 10m
  - power_on: {dealy: 5s}
  - wait: soon
  - reboot: {}
  - {wait: 1s, power_on: {}}
"""
    issues = _issues(text)
    assert [(i.line, i.col, i.message, i.hint) for i in issues] == [
        (4, 16, "unknown key 'dealy'", "did you mean 'delay'?"),
        (5, 11, "'soon' is not a duration; write e.g. 30s, 10m, 1h30m, 250ms or a number of seconds", None),
        (6, 5, "'reboot' is not one of: power_on, wait", None),
        (7, 5, "cannot tell what kind of entry item 6 of 'steps' is", "expected one of: power_on, wait"),
    ]


def test_discriminated_union_close_tag() -> None:
    (issue,) = _issues("steps:\n  - wiat: 1s\n")
    assert issue.message == "'wiat' is not one of: power_on, wait"
    assert issue.hint == "did you mean 'wait'?"


def test_field_discriminator_union() -> None:
    (issue,) = _issues("pet: {kind: dog, meows: 3, barks: 1}\n")
    assert issue.message == "unknown key 'meows'" and issue.hint == "allowed keys: kind, barks"
    assert (issue.line, issue.col) == (1, 18)
    (issue,) = _issues("pet: {kind: cow}\n")
    assert issue.message == "'cow' is not one of: cat, dog"
    (issue,) = _issues("pet: {barks: 1}\n")
    assert issue.message == "missing required key 'kind' for 'pet'"


def test_smart_union_collapses_to_one_issue() -> None:
    (issue,) = _issues("size: big\n")
    assert issue.message == "'big' is not valid for 'size'"
    assert issue.hint == "expected an integer or a list"
    (issue,) = _issues("size: [1, x]\n")  # the list member got further: report its error only
    assert issue.message == "'x' is not a valid integer for item 2 of 'size'"
    assert (issue.line, issue.col) == (1, 11)


def test_dict_values() -> None:
    (issue,) = _issues("options:\n  fast:\n    count: 1\n    speed: 2\n")
    assert issue.message == "unknown key 'speed'" and (issue.line, issue.col) == (4, 5)
    assert issue.hint == "allowed keys: count, level, max-wait"


def test_issue_at() -> None:
    located = load_yaml_text("devices:\n  - id: a\n    profile: nope\n", "x.yaml")
    issue = issue_at(located, ("devices", 0, "profile"), "unknown profile 'nope'", "see hw_profiles/")
    assert str(issue) == "x.yaml:3:14: error: unknown profile 'nope'\n    hint: see hw_profiles/"
    assert issue_at(located, ("devices", 0, "profile"), "m", key=True).col == 5
    assert issue_at(located, ("devices", 0, "absent"), "m").line == 2
