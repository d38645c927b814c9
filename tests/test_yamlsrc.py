"""YAML loading with positions, duplicate keys, syntax errors and number source text."""

from __future__ import annotations

import json
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
