"""YAML loading that remembers where every key and value came from.

The data tree is built from ``yaml.compose()`` nodes (safe tags only) so that
positions survive, duplicate keys are caught (PyYAML would silently keep the
last one) and numbers keep their source text (``version: 12.10``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator

from eden.errors import InvalidInput, Issue

YamlPath = tuple[str | int, ...]
Pos = tuple[int, int]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class YamlInt(int):
    """An int that remembers its YAML source text (e.g. ``0x1F``)."""

    source: str

    def __new__(cls, value: int, source: str) -> YamlInt:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (YamlInt, (int(self), self.source))


class YamlFloat(float):
    """A float that remembers its YAML source text (so ``12.10`` is not ``12.1``)."""

    source: str

    def __new__(cls, value: float, source: str) -> YamlFloat:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (YamlFloat, (float(self), self.source))


def scalar_text(value: Any) -> str:
    """The text the user wrote for a scalar: ``12.10`` stays ``"12.10"``."""
    source = getattr(value, "source", None)
    if source is not None:
        return str(source)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return scalar_text(value)
    return value


ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]
"""A str field that also accepts an unquoted YAML number, keeping its text (versions)."""


def plain(tree: Any) -> Any:
    """Convert a loaded tree to plain builtin types (drops YamlInt/YamlFloat)."""
    if isinstance(tree, Mapping):
        return {plain(k): plain(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [plain(v) for v in tree]
    if isinstance(tree, bool) or tree is None:
        return tree
    if isinstance(tree, int):
        return int(tree)
    if isinstance(tree, float):
        return float(tree)
    return tree


@dataclass
class _Node:
    """Positions parallel to the data tree; shared between aliases of one YAML node."""

    pos: Pos
    children: dict[Any, tuple[Pos, _Node]] | list[_Node] | None = None


@dataclass
class Located:
    """Loaded YAML data plus the positions of its keys and values (1-based)."""

    data: Any
    filename: str
    _root: _Node = field(repr=False)

    def _walk(self, path: YamlPath) -> tuple[_Node, Pos]:
        """Deepest node along ``path`` and the key position that led to it."""
        node = self._root
        key_pos = node.pos
        for seg in path:
            kids = node.children
            if isinstance(kids, dict) and not isinstance(seg, bool) and seg in kids:
                key_pos, node = kids[seg]
            elif isinstance(kids, list) and isinstance(seg, int) and -len(kids) <= seg < len(kids):
                node = kids[seg]
                key_pos = node.pos
            else:
                break
        return node, key_pos

    def value_pos(self, path: YamlPath = ()) -> Pos:
        """Position of the value at ``path`` (or of the deepest existing prefix)."""
        return self._walk(tuple(path))[0].pos

    def key_pos(self, path: YamlPath = ()) -> Pos:
        """Position of the key token for a mapping entry, or of the item for a list entry."""
        return self._walk(tuple(path))[1]

    def has(self, path: YamlPath) -> bool:
        node = self._root
        for seg in path:
            kids = node.children
            if isinstance(kids, dict) and seg in kids:
                node = kids[seg][1]
            elif isinstance(kids, list) and isinstance(seg, int) and -len(kids) <= seg < len(kids):
                node = kids[seg]
            else:
                return False
        return True


def _pos(mark: yaml.Mark | None) -> Pos:
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.done: dict[int, tuple[Any, _Node]] = {}  # by id(node): aliases share results

    def error(self, mark: yaml.Mark | None, message: str, hint: str | None = None) -> InvalidInput:
        line, col = _pos(mark)
        return InvalidInput(Issue(self.filename, line, col, message, hint))

    def build(self, node: yaml.Node) -> tuple[Any, _Node]:
        key = id(node)
        if key in self.done:
            return self.done[key]
        if (isinstance(node, yaml.MappingNode) and node.tag != _MAP_TAG) or (
            isinstance(node, yaml.SequenceNode) and node.tag != _SEQ_TAG
        ):
            raise self.error(node.start_mark, f"unsupported YAML tag '{node.tag}'", "remove the '!' tag")
        if isinstance(node, yaml.ScalarNode):
            result = (self.scalar(node), _Node(_pos(node.start_mark)))
        elif isinstance(node, yaml.SequenceNode):
            data: list[Any] = []
            kids: list[_Node] = []
            result = (data, _Node(_pos(node.start_mark), kids))
            self.done[key] = result
            for item in node.value:
                value, pos = self.build(item)
                data.append(value)
                kids.append(pos)
        elif isinstance(node, yaml.MappingNode):
            result = self.mapping(node)
        else:  # pragma: no cover - compose only yields the three kinds
            raise self.error(node.start_mark, f"unsupported YAML node {node!r}")
        self.done[key] = result
        return result

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self.error(node.start_mark, f"invalid YAML: {exc.problem}") from None
        except (ValueError, TypeError) as exc:  # e.g. '!!int x'
            raise self.error(node.start_mark, f"invalid YAML: {node.value!r} does not fit tag {node.tag}: {exc}") from None
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int):
            return YamlInt(value, node.value)
        if isinstance(value, float):
            return YamlFloat(value, node.value)
        # timestamps, binary, ...: keep the text the user wrote
        return node.value

    def mapping(self, node: yaml.MappingNode) -> tuple[dict[Any, Any], _Node]:
        data: dict[Any, Any] = {}
        kids: dict[Any, tuple[Pos, _Node]] = {}
        result = (data, _Node(_pos(node.start_mark), kids))
        self.done[id(node)] = result
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node.start_mark, "mapping keys must be plain scalars, not a list or mapping")
            key = plain(self.scalar(key_node))
            if key in kids:
                first = kids[key][0]
                raise self.error(
                    key_node.start_mark,
                    f"duplicate key '{key}' (first defined at line {first[0]}, column {first[1]})",
                    "each key may appear once in a mapping",
                )
            value, pos = self.build(value_node)
            data[key] = value
            kids[key] = (_pos(key_node.start_mark), pos)
        # '<<: *base' merges: keys written here win over merged ones
        for source in merged:
            if not isinstance(source, yaml.MappingNode):
                raise self.error(source.start_mark, "'<<' merge needs a mapping or a list of mappings")
            sub, sub_pos = self.build(source)
            assert isinstance(sub_pos.children, dict)
            for k, v in sub.items():
                if k not in data:
                    data[k] = v
                    kids[k] = sub_pos.children[k]
        return result


def load_yaml_text(text: str, filename: str = "<string>") -> Located:
    """Parse one YAML document, keeping positions. Raises InvalidInput."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            parts = [p for p in (exc.context, exc.problem) if p]
            line, col = _pos(mark)
            raise InvalidInput(Issue(filename, line, col, "invalid YAML: " + ", ".join(parts))) from None
        except yaml.YAMLError as exc:
            raise InvalidInput(Issue(filename, 0, 0, f"invalid YAML: {exc}")) from None
        if node is None:
            raise InvalidInput(Issue(filename, 1, 1, "file is empty"))
        data, root = _Builder(loader, filename).build(node)
        return Located(data, filename, root)
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Located:
    """Read and parse a YAML file. Missing/unreadable files raise InvalidInput too."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidInput(Issue(name, 0, 0, "file not found")) from None
    except IsADirectoryError:
        raise InvalidInput(Issue(name, 0, 0, "is a directory, not a file")) from None
    except OSError as exc:
        raise InvalidInput(Issue(name, 0, 0, f"cannot read file: {exc.strerror or exc}")) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(Issue(name, 0, 0, f"file is not UTF-8 text (bad byte at offset {exc.start})")) from None
    return load_yaml_text(text, name)
