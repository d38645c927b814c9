"""YAML loading with positions, duplicate keys, syntax errors and number source text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eden.errors import InvalidInput
from eden.yamlsrc import YamlFloat, YamlInt, load_yaml_file, load_yaml_text, plain, scalar_text

DOC = """\
name: demo
devices:
  - id: d1
    profile: rpi4-class
  - id: d2
    nics: [eth0, eth1]
settings:
  eve:
    version: 12.10
    count: 3
"""


@pytest.fixture()
def doc():
    return load_yaml_text(DOC, "demo.yaml")


def test_data_is_plain_tree(doc) -> None:
    assert doc.filename == "demo.yaml"
    assert doc.data == {
        "name": "demo",
        "devices": [{"id": "d1", "profile": "rpi4-class"}, {"id": "d2", "nics": ["eth0", "eth1"]}],
        "settings": {"eve": {"version": 12.1, "count": 3}},
    }


def test_top_level_positions(doc) -> None:
    assert doc.key_pos(("name",)) == (1, 1)
    assert doc.value_pos(("name",)) == (1, 7)
    assert doc.value_pos(()) == (1, 1)


def test_nested_positions(doc) -> None:
    assert doc.key_pos(("settings", "eve", "version")) == (9, 5)
    assert doc.value_pos(("settings", "eve", "version")) == (9, 14)
    assert doc.value_pos(("settings", "eve")) == (9, 5)  # block mapping starts at its first key


def test_list_item_positions(doc) -> None:
    assert doc.value_pos(("devices", 1)) == (5, 5)
    assert doc.key_pos(("devices", 1)) == (5, 5)
    assert doc.key_pos(("devices", 1, "nics")) == (6, 5)
    assert doc.value_pos(("devices", 1, "nics", 1)) == (6, 18)
    assert doc.key_pos(("devices", 1, "nics", 1)) == (6, 18)


def test_missing_path_gives_deepest_prefix(doc) -> None:
    assert doc.value_pos(("settings", "eve", "nope")) == doc.value_pos(("settings", "eve"))
    assert doc.value_pos(("devices", 7, "id")) == doc.value_pos(("devices",))
    assert doc.value_pos(("nope",)) == (1, 1)
    assert doc.has(("devices", 0, "id")) and not doc.has(("devices", 0, "x"))


def test_numbers_keep_source_text(doc) -> None:
    version = doc.data["settings"]["eve"]["version"]
    assert isinstance(version, YamlFloat) and isinstance(version, float)
    assert version == 12.1
    assert scalar_text(version) == "12.10"
    count = doc.data["settings"]["eve"]["count"]
    assert isinstance(count, YamlInt) and count + 1 == 4
    assert scalar_text(count) == "3"
    assert scalar_text("x") == "x" and scalar_text(1.5) == "1.5" and scalar_text(True) == "true"
    assert load_yaml_text("h: 0x1F").data["h"].source == "0x1F"


def test_json_and_plain(doc) -> None:
    # float/int subclasses serialise like their base types
    assert json.loads(json.dumps(doc.data))["settings"]["eve"]["version"] == 12.1
    tree = plain(doc.data)
    assert type(tree["settings"]["eve"]["version"]) is float
    assert type(tree["settings"]["eve"]["count"]) is int
    assert tree == doc.data


def test_safe_scalars() -> None:
    data = load_yaml_text("a: true\nb: null\nc: 2024-01-02\nd: '5'\ne:\n").data
    assert data == {"a": True, "b": None, "c": "2024-01-02", "d": "5", "e": None}
    with pytest.raises(InvalidInput):
        load_yaml_text("a: !!python/object:os.system {}\n")


def test_duplicate_key() -> None:
    with pytest.raises(InvalidInput) as info:
        load_yaml_text("top:\n  a: 1\n  b: 2\n  a: 3\n", "dup.yaml")
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.col) == ("dup.yaml", 4, 3)
    assert "duplicate key 'a'" in issue.message and "line 2" in issue.message
    assert issue.hint == "each key may appear once in a mapping"


def test_merge_keys_are_not_duplicates() -> None:
    data = load_yaml_text("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n").data
    assert data["d"] == {"x": 1, "y": 3}


def test_syntax_error_position() -> None:
    with pytest.raises(InvalidInput) as info:
        load_yaml_text("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    (issue,) = info.value.issues
    assert issue.file == "bad.yaml"
    assert (issue.line, issue.col) == (3, 2)
    assert "invalid YAML" in issue.message and "flow sequence" in issue.message
    assert str(issue).startswith("bad.yaml:3:2: error: invalid YAML")


def test_syntax_error_mapping_values() -> None:
    with pytest.raises(InvalidInput) as info:
        load_yaml_text("a: b: c\n", "x.yaml")
    assert (info.value.issues[0].line, info.value.issues[0].col) == (1, 5)
    assert "mapping values are not allowed here" in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    with pytest.raises(InvalidInput, match="file is empty"):
        load_yaml_text(text, "empty.yaml")


def test_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("k: v\n")
    located = load_yaml_file(good)
    assert located.data == {"k": "v"} and located.filename == str(good)
    with pytest.raises(InvalidInput) as info:
        load_yaml_file(tmp_path / "missing.yaml")
    assert "not found" in str(info.value) and str(tmp_path / "missing.yaml") in str(info.value)
    with pytest.raises(InvalidInput, match="directory"):
        load_yaml_file(tmp_path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InvalidInput, match="empty.yaml:1:1: error: file is empty"):
        load_yaml_file(empty)


# ------------------------------------------------------------------------------------------ hostile files


def _issue(call: object, *args: object):
    with pytest.raises(InvalidInput) as info:
        call(*args)  # type: ignore[operator]
    assert len(info.value.issues) == 1, str(info.value)
    return info.value.issues[0]


def test_nul_byte_is_an_error_at_its_position() -> None:
    issue = _issue(load_yaml_text, "name: demo\nseed: 1\x002\n", "nul.yaml")
    assert (issue.file, issue.line, issue.col) == ("nul.yaml", 2, 8)
    assert "#x0000 is not allowed" in issue.message


def test_nul_byte_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"a: 1\n\x00\n")
    issue = _issue(load_yaml_file, path)
    assert (issue.file, issue.line, issue.col) == (str(path), 2, 1)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: " + "[" * 500 + "]" * 500 + "\n", id="flow-500"),
        pytest.param("a:\n" + "".join("  " * i + "-\n" for i in range(1, 400)), id="block-400"),
        pytest.param("a: " + "{b: " * 300 + "1" + "}" * 300 + "\n", id="mappings-300"),
    ],
)
def test_deep_nesting_is_refused_with_the_limit(text: str) -> None:
    issue = _issue(load_yaml_text, text, "deep.yaml")
    assert issue.line >= 1 and issue.col >= 1
    assert "nested more than 64 levels deep" in issue.message
    assert issue.hint is not None and "EDEN_MAX_YAML_DEPTH" in issue.hint


def test_nesting_limit_is_raised_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a: " + "[" * 80 + "]" * 80 + "\n"
    with pytest.raises(InvalidInput):
        load_yaml_text(text)
    monkeypatch.setenv("EDEN_MAX_YAML_DEPTH", "100")
    node = load_yaml_text(text).data["a"]
    for _ in range(79):
        node = node[0]
    assert node == []


def test_depth_past_the_stack_is_still_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDEN_MAX_YAML_DEPTH", "1000000")
    issue = _issue(load_yaml_text, "a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    assert "nested too deeply" in issue.message


def test_bad_limit_variable_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDEN_MAX_YAML_DEPTH", "-3")
    issue = _issue(load_yaml_text, "a: 1\n")
    assert issue.file == "$EDEN_MAX_YAML_DEPTH" and "not a positive integer" in issue.message


BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcdefgh", "bcdefghi")
)


def test_alias_bomb_is_refused_before_it_expands() -> None:
    issue = _issue(load_yaml_text, BOMB, "bomb.yaml")
    assert "more than 100,000 values" in issue.message
    assert issue.hint is not None and "EDEN_MAX_YAML_NODES" in issue.hint
    assert issue.line == 5  # 'e' is the first value past 10^5 once expanded (111,111)


def test_aliases_below_the_limit_still_load() -> None:
    located = load_yaml_text("\n".join(BOMB.splitlines()[:4]) + "\n")
    assert len(plain(located.data)["d"]) == 10 and located.data["d"][0] is located.data["c"]


def test_alias_cycle_is_refused() -> None:
    issue = _issue(load_yaml_text, "a: &x\n  - 1\n  - *x\n", "cycle.yaml")
    assert "cycle" in issue.message and (issue.line, issue.col) == (1, 4)  # the anchored value


def test_merge_cycle_is_refused() -> None:
    issue = _issue(load_yaml_text, "a: &x\n  b: 1\n  <<: *x\n", "cycle.yaml")
    assert "cycle" in issue.message


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        pytest.param(lambda p: p.symlink_to("/dev/zero"), "a character device", id="symlink-dev-zero"),
        pytest.param(lambda p: os.mkfifo(p), "a FIFO", id="fifo"),
        pytest.param(lambda p: p.mkdir(), "a directory", id="directory"),
        pytest.param(lambda p: socket_at(p), "a socket", id="socket"),
    ],
)
def test_special_files_are_refused_before_reading(tmp_path: Path, make: object, kind: str) -> None:
    path = tmp_path / "s.yaml"
    make(path)  # type: ignore[operator]
    issue = _issue(load_yaml_file, path)  # a FIFO would block here if it were opened for a read
    assert issue.file == str(path) and issue.message == f"is {kind}, not a regular file"


def socket_at(path: Path) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


def test_file_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * 2000 + "\n")
    monkeypatch.setenv("EDEN_MAX_FILE_BYTES", "1000")
    issue = _issue(load_yaml_file, path)
    assert issue.message == "file is 2,004 bytes, more than 1,000"
    assert issue.hint is not None and "EDEN_MAX_FILE_BYTES" in issue.hint
    monkeypatch.setenv("EDEN_MAX_FILE_BYTES", "3000")
    assert len(load_yaml_file(path).data["a"]) == 2000


def test_default_file_limit_is_one_mebibyte(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write("a: |\n")
        f.write(("  " + "x" * 1022 + "\n") * 1025)
    assert "more than 1,048,576" in _issue(load_yaml_file, path).message


def test_value_limit_stops_the_composer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure-Python PyYAML composes some 20k values a second: counting them as they are composed
    bounds the time a file of a million small values takes, not only its memory."""
    monkeypatch.setenv("EDEN_MAX_YAML_NODES", "1000")
    text = "a: [" + "1, " * 2000 + "1]\n"
    issue = _issue(load_yaml_text, text, "flat.yaml")
    # the mapping, its key and the list count too: item 998 is value 1,001
    assert issue.message == "the document has more than 1,000 values" and (issue.line, issue.col) == (1, 5 + 3 * 997)
    assert issue.hint == "the limit is 1,000 YAML values in one file, aliases counted each time they are used; set EDEN_MAX_YAML_NODES to raise it"
    monkeypatch.setenv("EDEN_MAX_YAML_NODES", "3000")
    assert len(load_yaml_text(text).data["a"]) == 2001
