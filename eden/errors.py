"""One error vocabulary for bad input, plus pydantic-error translation.

Every problem with a user-written file is reported as an :class:`Issue` that
points at ``file:line:col``.  :func:`validate_model` turns pydantic's
``ValidationError`` (whose ``loc`` is a path through the *model*) into issues
that point into the *YAML* the user wrote.
"""

from __future__ import annotations

import difflib
import enum
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, RootModel, Tag, ValidationError
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from eden.yamlsrc import Located

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

Path = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Issue:
    """One problem in an input file; line/col are 1-based (0 = unknown)."""

    file: str
    line: int
    col: int
    message: str
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


def format_issues(issues: Iterable[Issue]) -> str:
    return "\n".join(str(i) for i in issues)


class InvalidInput(Exception):
    """The user's input is wrong (not the product, not the harness)."""

    exit_code = EXIT_INVALID

    def __init__(self, issues: Issue | Iterable[Issue]) -> None:
        self.issues: list[Issue] = [issues] if isinstance(issues, Issue) else list(issues)
        super().__init__(format_issues(self.issues))

    @classmethod
    def at(cls, file: str, line: int, col: int, message: str, hint: str | None = None) -> InvalidInput:
        return cls(Issue(file, line, col, message, hint))

    def __str__(self) -> str:
        return format_issues(self.issues)


class InfrastructureError(Exception):
    """The harness or a backend broke; says nothing about the product under test."""

    exit_code = EXIT_INVALID


class HintedValueError(ValueError):
    """A ValueError for validators that also want to show a hint line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Problem:
    """A translated validation error, positioned by data path rather than file."""

    path: Path
    message: str
    hint: str | None = None
    at_key: bool = False  # point at the key token rather than the value


def did_you_mean(word: str, choices: Iterable[str], what: str, *, max_listed: int = 12) -> str:
    """A hint for an unknown name: the closest known one, else the known ones (or that there are none)."""
    options = list(dict.fromkeys(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if not options:
        return f"there are no {what}"
    shown = ", ".join(options[:max_listed]) + (", ..." if len(options) > max_listed else "")
    return f"known {what}: {shown}"


def issue_at(
    located: Located, path: Sequence[str | int], message: str, hint: str | None = None, *, key: bool = False
) -> Issue:
    """An Issue at ``path`` in ``located`` (for checks done after validation)."""
    line, col = located.key_pos(tuple(path)) if key else located.value_pos(tuple(path))
    return Issue(located.filename, line, col, message, hint)


def validate_model(model_cls: type[M], located: Located, *, context: dict[str, Any] | None = None) -> M:
    """Validate ``located.data`` against ``model_cls``; raise InvalidInput with positions."""
    try:
        return model_cls.model_validate(located.data, context=context)
    except ValidationError as exc:
        problems = explain_validation_error(exc, model_cls, located.data)
        issues = {issue_at(located, p.path, p.message, p.hint, key=p.at_key) for p in problems}
        raise InvalidInput(sorted(issues, key=lambda i: (i.line, i.col, i.message))) from None


# --------------------------------------------------------------------------------------
# Walking the model type alongside the loc


_NONE_TYPES = (type(None), None)
_TYPE_ALIAS: Any = getattr(typing, "TypeAliasType", None)  # Python >= 3.12
_MISSING = object()


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """Strip Annotated/Optional; return (type, annotated metadata)."""
    meta: list[Any] = []
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp, *extra = get_args(tp)
            meta.extend(extra)
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a not in _NONE_TYPES]
            if len(members) == 1:
                tp = members[0]
            else:
                return Union[tuple(members)], meta  # noqa: UP007 - runtime construction
        elif _TYPE_ALIAS is not None and isinstance(tp, _TYPE_ALIAS):
            tp = tp.__value__
        else:
            return tp, meta


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _discriminator(meta: list[Any], field: FieldInfo | None) -> Any:
    for m in meta:
        if isinstance(m, Discriminator):
            return m
        if isinstance(m, FieldInfo) and m.discriminator is not None:
            return m.discriminator
    return field.discriminator if field is not None else None


def _member_tags(member: Any, discriminator: Any) -> set[str]:
    """Tags that pydantic would put in the loc for this union member."""
    tp, meta = _unwrap(member)
    tags = {str(m.tag) for m in meta if isinstance(m, Tag)}
    if tags:
        return tags
    disc_field = discriminator.discriminator if isinstance(discriminator, Discriminator) else discriminator
    if isinstance(disc_field, str) and isinstance(tp, type) and issubclass(tp, BaseModel):
        f = tp.model_fields.get(disc_field)
        if f is not None:
            lit, _ = _unwrap(f.annotation)
            if get_origin(lit) is Literal:
                return {v.value if isinstance(v, enum.Enum) else str(v) for v in get_args(lit)}
    name = getattr(tp, "__name__", None)
    return {name} if name else set()


def _field_by_key(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, f in model.model_fields.items():
        if (f.validation_alias if isinstance(f.validation_alias, str) else f.alias or name) == key:
            return f
    return None


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    keys = []
    for name, f in model.model_fields.items():
        keys.append(f.validation_alias if isinstance(f.validation_alias, str) else f.alias or name)
    return keys


@dataclass
class _Walk:
    path: list[str | int]
    model: type[BaseModel] | None  # the model whose mapping holds the last path element
    tp: Any  # the (unwrapped) type at the end of the loc, or None if unknown
    union_at: tuple[str | int, ...] | None  # data path where a smart union was entered
    union_tag: str | None = None  # which member of that union the loc went through
    dict_key: bool = False


def _walk(root: type[BaseModel], data: Any, loc: tuple[str | int, ...]) -> _Walk:
    """Map a pydantic loc to a data path, tracking the model type as we go."""
    tp: Any = root
    field: FieldInfo | None = None
    node: Any = data
    path: list[str | int] = []
    parent_model: type[BaseModel] | None = None
    union_at: tuple[str | int, ...] | None = None
    union_tag: str | None = None
    dict_key = False
    for seg in loc:
        if seg == "[key]":
            dict_key = True
            continue
        bare, meta = _unwrap(tp) if tp is not None else (None, [])
        while isinstance(bare, type) and issubclass(bare, RootModel):  # no loc segment for 'root'
            field = bare.model_fields["root"]
            bare, meta = _unwrap(field.annotation)
            meta = [*field.metadata, *meta]
        if bare is not None and _is_union(bare):
            disc = _discriminator(meta, field)
            if disc is None and union_at is None:
                union_at, union_tag = tuple(path), str(seg)
            tp = next((m for m in get_args(bare) if str(seg) in _member_tags(m, disc)), None)
            field = None
            continue
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            parent_model = bare
            field = _field_by_key(bare, str(seg))
            tp = field.annotation if field is not None else None
            path.append(seg)
            node = node.get(seg, _MISSING) if isinstance(node, Mapping) else _MISSING
            continue
        origin = get_origin(bare)
        args = get_args(bare)
        if isinstance(seg, int) and (origin in (list, tuple, set, frozenset, Sequence) or bare in (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                tp = args[seg] if seg < len(args) else None
            else:
                tp = args[0] if args else None
        elif origin in (dict, Mapping) or bare is dict:
            tp = args[1] if len(args) == 2 else None
        elif bare is None or bare is Any:
            # Unknown type: follow the data if the segment exists there, else treat it
            # as a schema tag (e.g. 'function-after[...]', 'int') that is not data.
            exists = (isinstance(node, Mapping) and seg in node) or (
                isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node)
            )
            if not exists:
                continue
            tp = None
        else:
            # A scalar type with further segments: those are schema tags.
            continue
        field = None
        parent_model = None
        path.append(seg)
        if isinstance(node, Mapping):
            node = node.get(seg, _MISSING)
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            node = node[seg]
        else:
            node = _MISSING
    final = _unwrap(tp)[0] if tp is not None else None
    return _Walk(path, parent_model, final, union_at, union_tag, dict_key)


# --------------------------------------------------------------------------------------
# Messages

_KINDS: dict[str, str] = {
    "int": "integer",
    "float": "number",
    "bool": "boolean (true/false)",
    "string": "string",
    "str": "string",
    "dict": "mapping",
    "model": "mapping",
    "model_attributes": "mapping",
    "list": "list",
    "tuple": "list",
    "set": "list",
    "frozenset": "list",
    "bytes": "string",
    "date": "date",
    "datetime": "date and time",
    "time": "time",
    "timedelta": "duration",
    "decimal": "number",
    "uuid": "UUID",
    "url": "URL",
    "none": "empty value",
    "path": "path",
}


def describe(value: Any) -> str:
    """A short rendering of a user value for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "an empty value"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = getattr(value, "source", None) or str(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"'{text}'"


def _label(path: Sequence[str | int]) -> str:
    """Name a data path for messages: 'count', or 'item 2 of nics'."""
    if not path:
        return "the document"
    last = path[-1]
    if isinstance(last, int):
        parent = next((str(p) for p in reversed(path) if isinstance(p, str)), None)
        return f"item {last + 1} of '{parent}'" if parent else f"item {last + 1}"
    return f"'{last}'"


def _close(word: str, choices: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    hit = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hit[0]] if hit else None


def _choices_from_type(tp: Any) -> list[str] | None:
    if tp is None:
        return None
    if get_origin(tp) is Literal:
        return [v.value if isinstance(v, enum.Enum) else str(v) for v in get_args(tp)]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [str(m.value) for m in tp]
    return None


def _choices_from_ctx(expected: str) -> list[str]:
    # pydantic renders expected values as "'a', 'b' or 'c'"
    parts = expected.replace(" or ", ", ").split(", ")
    return [p.strip().strip("'\"") for p in parts if p.strip()]


def _kind_of(err_type: str) -> str | None:
    for suffix in ("_type", "_parsing", "_from_float", "_from_datetime"):
        if err_type.endswith(suffix):
            return _KINDS.get(err_type[: -len(suffix)])
    return None


def _message(err: Mapping[str, Any], walk: _Walk) -> Problem:
    problem = _describe_error(err, walk)
    return replace(problem, at_key=True) if walk.dict_key else problem


def _describe_error(err: Mapping[str, Any], walk: _Walk) -> Problem:
    etype: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    path = tuple(walk.path)
    label = _label(path)

    if etype == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        hint = None
        if walk.model is not None:
            allowed = _allowed_keys(walk.model)
            close = _close(key, allowed)
            hint = f"did you mean '{close}'?" if close else "allowed keys: " + ", ".join(allowed)
        return Problem(path, f"unknown key '{key}'", hint, at_key=True)

    if etype == "missing":
        if path and isinstance(path[-1], str):
            return Problem(path[:-1], f"missing required key '{path[-1]}'")
        return Problem(path[:-1], f"missing {label}")

    if etype in ("literal_error", "enum"):
        choices = _choices_from_type(walk.tp) or _choices_from_ctx(str(ctx.get("expected", "")))
        close = _close(str(getattr(value, "source", None) or value), choices)
        return Problem(
            path,
            f"{describe(value)} is not one of: {', '.join(choices)}",
            f"did you mean '{close}'?" if close else None,
        )

    if etype in ("value_error", "assertion_error"):
        error = ctx.get("error")
        text = str(error) if error is not None else err["msg"].removeprefix("Value error, ")
        return Problem(path, text, getattr(error, "hint", None))

    if etype == "union_tag_invalid":
        choices = _choices_from_ctx(str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag", ""))
        close = _close(tag, choices)
        return Problem(
            path,
            f"'{tag}' is not one of: {', '.join(choices)}",
            f"did you mean '{close}'?" if close else None,
        )

    if etype == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "")).strip("'")
        if disc.isidentifier():
            return Problem(path, f"missing required key '{disc}' for {label}")
        tags = _union_tags(walk.tp)
        return Problem(
            path, f"cannot tell what kind of entry {label} is", "expected one of: " + ", ".join(tags) if tags else None
        )

    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"):
        ops = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        limit = next(iter(ctx.values()), "?")
        if etype == "multiple_of":
            return Problem(path, f"{describe(value)} for {label} must be a multiple of {limit}")
        return Problem(path, f"{describe(value)} is out of range for {label}: must be {ops[etype]} {limit}")

    if etype in ("too_short", "too_long"):
        n = ctx.get("min_length" if etype == "too_short" else "max_length")
        word = "at least" if etype == "too_short" else "at most"
        unit = "item" if n == 1 else "items"
        if isinstance(value, str):
            unit = "character" if n == 1 else "characters"
        return Problem(path, f"{label} must have {word} {n} {unit}")

    if etype in ("string_too_short", "string_too_long"):
        return Problem(path, f"{label}: {err['msg'].lower()}")

    if etype == "string_pattern_mismatch":
        return Problem(path, f"{describe(value)} is not valid for {label} (must match {ctx.get('pattern')})")

    kind = _kind_of(etype)
    if kind is not None:
        if not path and kind == "mapping":
            return Problem(path, f"expected a mapping at the top level, got {_a(value)}")
        if kind in ("list", "mapping") or isinstance(value, (Mapping, list, tuple)) or value is None:
            return Problem(path, f"expected {_article(kind)} for {label}, got {describe(value)}")
        return Problem(path, f"{describe(value)} is not a valid {kind} for {label}")

    msg = err["msg"]
    return Problem(path, f"{msg} (for {label})" if path else msg)


def _union_tags(tp: Any) -> list[str]:
    if tp is None or not _is_union(tp):
        return []
    tags: list[str] = []
    for member in get_args(tp):
        tags.extend(sorted(t for t in _member_tags(member, None) if t not in tags))
    return tags


def _article(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _a(value: Any) -> str:
    d = describe(value)
    return d if d.startswith(("a ", "an ")) else f"a scalar {d}"


def explain_validation_error(exc: ValidationError, model_cls: type[BaseModel], data: Any) -> list[Problem]:
    """Translate a ValidationError into human Problems located by data path.

    Smart unions make pydantic report one error per member for a single bad value;
    those are collapsed to the error(s) of the member that got deepest into the
    data, or to one "expected X or Y" message when no member got past the value.
    """
    plain: list[Problem] = []
    groups: dict[tuple[str | int, ...], list[tuple[dict[str, Any], _Walk]]] = {}
    for err in exc.errors(include_url=False):
        walk = _walk(model_cls, data, tuple(err["loc"]))
        if walk.union_at is not None:
            groups.setdefault(walk.union_at, []).append((dict(err), walk))
        else:
            plain.append(_message(err, walk))
    for at, members in groups.items():
        depth = max(len(w.path) for _, w in members)
        if depth > len(at):
            # Keep only the member that matched furthest (one member, not all of them).
            best = next(w.union_tag for _, w in members if len(w.path) == depth)
            plain.extend(_message(e, w) for e, w in members if w.union_tag == best and len(w.path) == depth)
            continue
        expected: list[str] = []
        for e, w in members:
            kind = _kind_of(e["type"])
            if kind is not None:
                desc = _article(kind)
            elif e["type"] in ("value_error", "assertion_error"):
                desc = str((e.get("ctx") or {}).get("error", e["msg"]))
            else:
                desc = _message(e, w).message
            if desc not in expected:
                expected.append(desc)
        if len(expected) == 1:
            plain.append(_message(*members[0]))
        else:
            value = members[0][0].get("input")
            plain.append(
                Problem(at, f"{describe(value)} is not valid for {_label(at)}", "expected " + " or ".join(expected))
            )
    return plain
