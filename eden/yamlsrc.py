"""YAML loading that remembers where every key and value came from.

The data tree is built from ``yaml.compose()`` nodes (safe tags only) so that
positions survive, duplicate keys are caught (PyYAML would silently keep the
last one) and numbers keep their source text (``version: 12.10``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator

from eden.errors import InvalidInput, Issue
from eden.limits import limit, raise_hint

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


class _OverLimit(yaml.composer.ComposerError):
    """A file past one of the limits of :mod:`eden.limits` (``name``), found while composing."""

    def __init__(self, name: str, problem: str, mark: yaml.Mark) -> None:
        super().__init__(None, None, problem, mark)
        self.name = name


class _Loader(yaml.SafeLoader):
    """PyYAML's composer recurses once per nesting level and keeps every node: bound the depth
    before Python's stack is, and the node count while composing (pure-Python PyYAML composes
    some 20k nodes a second, so the bound is also one on time)."""

    max_depth = 64
    max_nodes = 100_000
    _depth = 0
    _nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > self.max_depth:
                problem = f"nested more than {self.max_depth} levels deep"
                raise _OverLimit("yaml_depth", problem, self.peek_event().start_mark)
            if self._nodes > self.max_nodes:
                problem = f"the document has more than {self.max_nodes:,} values"
                raise _OverLimit("yaml_nodes", problem, self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.done: dict[int, tuple[Any, _Node]] = {}  # by id(node): aliases share results
        self.size: dict[int, int] = {}  # by id(node): values under it, aliases expanded
        self.open: set[int] = set()  # nodes being built: an alias to one of them is a cycle
        self.max_nodes = limit("yaml_nodes")

    def count(self, node: yaml.Node, size: int) -> None:
        """Record the expanded size of ``node``; an alias bomb ends here, before anything expands it."""
        if size > self.max_nodes:
            raise self.error(
                node.start_mark,
                f"the document has more than {self.max_nodes:,} values",
                raise_hint("yaml_nodes"),
            )
        self.size[id(node)] = size

    def error(self, mark: yaml.Mark | None, message: str, hint: str | None = None) -> InvalidInput:
        line, col = _pos(mark)
        return InvalidInput(Issue(self.filename, line, col, message, hint))

    def build(self, node: yaml.Node) -> tuple[Any, _Node]:
        key = id(node)
        if key in self.open:
            raise self.error(
                node.start_mark, "an alias refers to a value that contains it (a cycle)", "aliases may only repeat a finished value"
            )
        if key in self.done:
            return self.done[key]
        self.open.add(key)
        try:
            return self._build(node, key)
        finally:
            self.open.discard(key)

    def _build(self, node: yaml.Node, key: int) -> tuple[Any, _Node]:
        if (isinstance(node, yaml.MappingNode) and node.tag != _MAP_TAG) or (
            isinstance(node, yaml.SequenceNode) and node.tag != _SEQ_TAG
        ):
            raise self.error(node.start_mark, f"unsupported YAML tag '{node.tag}'", "remove the '!' tag")
        if isinstance(node, yaml.ScalarNode):
            result = (self.scalar(node), _Node(_pos(node.start_mark)))
            self.count(node, 1)
        elif isinstance(node, yaml.SequenceNode):
            data: list[Any] = []
            kids: list[_Node] = []
            result = (data, _Node(_pos(node.start_mark), kids))
            size = 1
            for item in node.value:
                value, pos = self.build(item)
                size += self.size[id(item)]
                data.append(value)
                kids.append(pos)
            self.count(node, size)
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
        size = 1
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
            size += 1 + self.size[id(value_node)]
            data[key] = value
            kids[key] = (_pos(key_node.start_mark), pos)
        # '<<: *base' merges: keys written here win over merged ones
        for source in merged:
            if not isinstance(source, yaml.MappingNode):
                raise self.error(source.start_mark, "'<<' merge needs a mapping or a list of mappings")
            sub, sub_pos = self.build(source)
            size += self.size[id(source)]
            assert isinstance(sub_pos.children, dict)
            for k, v in sub.items():
                if k not in data:
                    data[k] = v
                    kids[k] = sub_pos.children[k]
        self.count(node, size)
        return result


def _reader_issue(exc: yaml.reader.ReaderError, text: str, filename: str) -> Issue:
    """A character YAML does not allow (NUL, other control characters), at its line and column."""
    before = text[: exc.position]
    line = before.count("\n") + 1
    col = exc.position - (before.rfind("\n") + 1) + 1
    message = f"invalid YAML: character #x{exc.character:04x} is not allowed in a YAML file"
    return Issue(filename, line, col, message, "remove it; YAML text may not contain control characters")


def load_yaml_text(text: str, filename: str = "<string>") -> Located:
    """Parse one YAML document, keeping positions. Raises InvalidInput."""
    try:
        loader = _Loader(text)  # the reader checks every character here
    except yaml.reader.ReaderError as exc:
        raise InvalidInput(_reader_issue(exc, text, filename)) from None
    loader.max_depth = limit("yaml_depth")
    loader.max_nodes = limit("yaml_nodes")
    try:
        try:
            node = loader.get_single_node()
        except yaml.reader.ReaderError as exc:
            raise InvalidInput(_reader_issue(exc, text, filename)) from None
        except _OverLimit as exc:
            line, col = _pos(exc.problem_mark)
            raise InvalidInput(Issue(filename, line, col, exc.problem or "", raise_hint(exc.name))) from None
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
    except RecursionError:  # only when EDEN_MAX_YAML_DEPTH was raised past what the stack holds
        hint = raise_hint("yaml_depth").replace("raise", "lower")
        raise InvalidInput(Issue(filename, 0, 0, "invalid YAML: nested too deeply for this Python", hint)) from None
    finally:
        loader.dispose()


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _stat_or_none(path: str | Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _refuse_special(name: str, st: os.stat_result | None) -> None:
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "a special file")
        raise InvalidInput(Issue(name, 0, 0, f"is {kind}, not a regular file", "give the path of a YAML file"))


def read_text_file(path: str | Path) -> str:
    """Read a regular UTF-8 file of bounded size; anything else raises InvalidInput before any read.

    The file is opened without blocking (a FIFO with no writer does not hang) and checked on the
    open descriptor (no window between the check and the read), so a symlink to ``/dev/zero``, a
    FIFO or a directory is refused by what it is, and a regular file by its size."""
    name = str(path)
    max_bytes = limit("file_bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidInput(Issue(name, 0, 0, "file not found")) from None
    except OSError as exc:
        _refuse_special(name, _stat_or_none(path))  # a socket cannot be opened at all (ENXIO)
        raise InvalidInput(Issue(name, 0, 0, f"cannot read file: {exc.strerror or exc}")) from None
    try:
        st = os.fstat(fd)
        _refuse_special(name, st)
        if st.st_size > max_bytes:
            message = f"file is {st.st_size:,} bytes, more than {max_bytes:,}"
            raise InvalidInput(Issue(name, 0, 0, message, raise_hint("file_bytes")))
        with os.fdopen(fd, "rb", closefd=False) as stream:
            raw = stream.read(max_bytes + 1)  # a file that grows while read is bounded too
    except OSError as exc:
        raise InvalidInput(Issue(name, 0, 0, f"cannot read file: {exc.strerror or exc}")) from None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise InvalidInput(Issue(name, 0, 0, f"file is more than {max_bytes:,} bytes", raise_hint("file_bytes")))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(Issue(name, 0, 0, f"file is not UTF-8 text (bad byte at offset {exc.start})")) from None


def load_yaml_file(path: str | Path) -> Located:
    """Read and parse a YAML file. Missing, unreadable, special or oversized files raise InvalidInput too."""
    return load_yaml_text(read_text_file(path), str(path))
