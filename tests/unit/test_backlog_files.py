"""The backlog file readers: every shape read row by row, errors naming the row and line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from batchdrain.db import NewPhase
from batchdrain.domain import PhaseSpec
from batchdrain.importing import BacklogFile, BacklogFormat, BadBacklogFile, format_of
from batchdrain.importing.json_rows import json_rows, jsonl_rows
from batchdrain.importing.values import Written
from batchdrain.importing.yaml_rows import yaml_rows

PATH = Path("backlog")
ROWS = [
    {"run_id": "r", "phase_id": "a", "command": ["true"]},
    {"run_id": "r", "phase_id": "b", "command": ["sh", "-c", "echo '[,]{}'"], "timeout": 12345},
    {"run_id": "r ☃", "phase_id": "c\nd", "command": ["x"], "env": {"A": "1"}, "cpu": "500m"},
]


class CountingStream(io.StringIO):
    """A text stream that remembers how much was read from it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.consumed = 0

    def read(self, size: int | None = -1) -> str:
        data = super().read(size)
        self.consumed += len(data)
        return data


_CONSTRUCTOR = yaml.SafeLoader("")


def typed(value):
    """A row as the plain parsers type it: each ``Written`` scalar made the value of its kind."""
    if isinstance(value, Written):
        tag = f"tag:yaml.org,2002:{value.kind}"
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, str(value)))
    if isinstance(value, dict):
        return {typed(k): typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return value


def data_of(rows):
    return [typed(r.data) for r in rows]


# -- JSON ----------------------------------------------------------------------------

def test_a_json_array_is_read_row_by_row_with_rows_and_lines():
    text = "[\n" + ",\n".join(json.dumps(r) for r in ROWS) + "\n]\n"
    rows = list(json_rows(io.StringIO(text), PATH))
    assert data_of(rows) == ROWS
    assert [(r.row, r.line) for r in rows] == [(1, 2), (2, 3), (3, 4)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11, 64])
def test_json_rows_cut_anywhere_by_the_window_read_the_same(chunk):
    # Numbers, strings with brackets and escapes, and blanks fall across every boundary.
    text = ' [ ' + ' ,\n\n '.join(json.dumps(r) for r in ROWS) + ' ] \n'
    rows = list(json_rows(io.StringIO(text), PATH, chunk=chunk))
    assert data_of(rows) == ROWS
    assert [r.line for r in rows] == [1, 3, 5]


def test_the_json_window_reads_ahead_by_a_chunk_not_the_file():
    text = json.dumps([{"run_id": "r", "phase_id": f"p{i}", "command": ["true"]} for i in range(20_000)])
    stream = CountingStream(text)
    rows = json_rows(stream, PATH, chunk=4096)
    assert next(rows).data["phase_id"] == "p0"
    assert stream.consumed <= 4096
    assert sum(1 for _ in rows) == 19_999
    assert stream.consumed == len(text)


def test_a_json_mapping_with_phases_streams_its_array_and_drops_other_members():
    text = json.dumps({"version": 12345, "notes": {"phases": "no"}, "phases": ROWS, "after": [1, 2]})
    for chunk in (3, 1 << 20):
        assert data_of(json_rows(io.StringIO(text), PATH, chunk=chunk)) == ROWS


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"run_id": "r"}', "expected a list of phases"),
    ('{"phases": {"a": 1}}', "expected a list of phases"),
    ('"phases"', "expected a list of phases"),
    ("", "expected a list of phases"),
    ('[{"a": 1}] [2]', "backlog:1: not valid JSON: extra data after the phases"),
    ('[{"a": 1} {"b": 2}]', "backlog:1: row 1: not valid JSON: expected ',' or ']'"),
    ('[{"a": 1},\n{"b": 2},\n{"c": }]', "backlog:3: row 3: not valid JSON: Expecting value"),
    ('[{"a": 1},\n{"b": "unterminated}]', "backlog:2: row 2: not valid JSON: Unterminated string"),
    ('[{"a": 1},\n', "backlog:2: row 2: not valid JSON: Expecting value"),
    ('{"phases": [], oops}', "not valid JSON: expected \"key\": value"),
])
def test_bad_json_is_one_line_naming_where(text, fragment):
    with pytest.raises(BadBacklogFile) as caught:
        list(json_rows(io.StringIO(text), PATH, chunk=4))
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_json_lines_skip_blank_lines_and_name_the_line_of_a_bad_one():
    text = "\n".join(json.dumps(r) for r in ROWS[:2]) + "\n\n" + json.dumps(ROWS[2]) + "\n"
    rows = list(jsonl_rows(io.StringIO(text), PATH))
    assert data_of(rows) == ROWS
    assert [(r.row, r.line) for r in rows] == [(1, 1), (2, 2), (3, 4)]
    with pytest.raises(BadBacklogFile, match=r"^backlog:4: row 3: not valid JSON"):
        list(jsonl_rows(io.StringIO(text.replace('"x"', "x")), PATH))


# -- YAML ----------------------------------------------------------------------------

YAML_LIST = """\
# a comment
- run_id: r
  phase_id: a
  command: ["true"]
- {run_id: r, phase_id: b, command: [sh, -c, "echo '[,]{}'"], timeout: 12345}
- run_id: "r ☃"
  phase_id: "c\\nd"
  command: [x]
  env: {A: "1"}
  cpu: 500m
"""


def test_a_yaml_list_is_read_row_by_row_with_rows_and_lines():
    rows = list(yaml_rows(io.StringIO(YAML_LIST), PATH))
    assert data_of(rows) == ROWS
    assert [(r.row, r.line) for r in rows] == [(1, 2), (2, 5), (3, 6)]


def test_yaml_is_read_a_chunk_at_a_time():
    text = "".join(f"- {{run_id: r, phase_id: p{i}, command: [x]}}\n" for i in range(50_000))
    stream = CountingStream(text)
    rows = yaml_rows(stream, PATH, chunk=8192)
    assert next(rows).data["phase_id"] == "p0"
    assert stream.consumed <= 2 * 8192
    assert sum(1 for _ in rows) == 49_999


def test_multi_document_yaml_numbers_rows_across_documents_and_keeps_anchors_per_document():
    text = ("- {run_id: r, phase_id: a, command: [x]}\n"
            "---\n"
            "kind: backlog\n"
            "phases:\n"
            "  - &base {run_id: r, phase_id: b, command: [x], timeout: 5}\n"
            "  - {<<: *base, phase_id: c}\n"
            "---\n"
            "- {run_id: s, phase_id: a, command: [y]}\n"
            "---\n")
    rows = list(yaml_rows(io.StringIO(text), PATH))
    assert [(r.row, r.line, r.data["run_id"], r.data["phase_id"]) for r in rows] == [
        (1, 1, "r", "a"), (2, 5, "r", "b"), (3, 6, "r", "c"), (4, 8, "s", "a")]
    assert typed(rows[2].data["timeout"]) == 5
    with pytest.raises(BadBacklogFile, match="not valid YAML"):
        list(yaml_rows(io.StringIO(text.replace("- {run_id: s, phase_id: a", "- {<<: *base")), PATH))


@pytest.mark.parametrize(("text", "fragment"), [
    ("run_id: r\n", "backlog: expected a list of phases"),
    ("phases: {a: 1}\n", "backlog: expected a list of phases"),
    ("just text\n", "backlog: expected a list of phases"),
    ("- [unclosed", "backlog:2: row 1: not valid YAML"),
    ("- {run_id: r, phase_id: a, command: [x]}\n- {run_id: r\n- {b: 2}\n", "row 2: not valid YAML"),
    ("- {a: 1}\n---\n- [x\n", "row 2: not valid YAML"),
])
def test_bad_yaml_is_one_line_naming_where(text, fragment):
    with pytest.raises(BadBacklogFile) as caught:
        list(yaml_rows(io.StringIO(text), PATH))
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


# -- the checked phases --------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".yaml"])
def test_every_format_gives_the_same_phases(tmp_path, suffix):
    path = tmp_path / f"backlog{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    else:
        path.write_text(YAML_LIST, encoding="utf-8")
    source = BacklogFile(path)
    first, again = list(source.phases()), list(source.phases())
    assert first == again  # each call reads the file again: a retried transaction sees the same rows
    assert first[1] == NewPhase("r", "b", PhaseSpec(command=("sh", "-c", "echo '[,]{}'"), timeout_seconds=12345))
    assert [(p.run_id, p.phase_id) for p in first] == [("r", "a"), ("r", "b"), ("r ☃", "c\nd")]


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.json", BacklogFormat.JSON), ("a.JSONL", BacklogFormat.JSONL), ("a.ndjson", BacklogFormat.JSONL),
    ("a.yaml", BacklogFormat.YAML), ("a.yml", BacklogFormat.YAML), ("backlog", BacklogFormat.YAML),
])
def test_the_format_follows_the_name(name, fmt):
    assert format_of(Path(name)) == fmt


@pytest.mark.parametrize(("rows", "fragment"), [
    ([ROWS[0], {"run_id": "r", "phase_id": "b"}], ":3: row 2: missing command"),
    ([ROWS[0], ROWS[1], 7], ":4: row 3: expected a mapping, got int"),
    ([ROWS[0], {**ROWS[0], "command": "echo hi"}], ":3: row 2: command must be a list"),
    ([{**ROWS[0], "retries": 3}], ":2: row 1: unknown field(s) retries"),
])
def test_a_bad_row_is_named_by_line_and_row(tmp_path, rows, fragment):
    path = tmp_path / "b.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]", encoding="utf-8")
    with pytest.raises(BadBacklogFile) as caught:
        list(BacklogFile(path).phases())
    assert str(caught.value).startswith(f"{path}{fragment}"), caught.value


def test_files_that_cannot_be_read_or_hold_no_phases_are_refused(tmp_path):
    with pytest.raises(BadBacklogFile, match="cannot read"):
        BacklogFile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"run_id": "\xff"}\n')
    with pytest.raises(BadBacklogFile, match="cannot read"):
        list(BacklogFile(bad).phases())
    for name, text in (("e.json", "[]"), ("e.jsonl", "\n\n"), ("e.yaml", "[]\n---\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(BadBacklogFile, match="no phases in file"):
            list(BacklogFile(tmp_path / name).phases())


# Rows that take every path of yaml_events: plain events, and each feature that hands a
# row to PyYAML's composer (anchors, aliases, merges, tags, complex keys).
YAML_CORPUS = """\
- {a: plain, b: 12, c: 1.5, d: 0x1f, e: 017, f: yes, g: off, h: ~, i: null, j: "", k: '12'}
- when: 2026-12-01 19:01:38
  day: 2026-12-01
  block: |
    two
    lines
  folded: >
    one
    line
  nested: {list: [1, [2, {x: y}], []], map: {}}
  empty:
  1: int key
  1.5: float key
  true: bool key
- &base {run_id: r, phase_id: a, command: [x], env: &env {A: "1"}}
- {<<: *base, phase_id: b}
- {run_id: r, phase_id: c, command: [x], env: *env}
- {tagged: !!str 12, int: !!int "3", bin: !!binary aGk=, float: !!float "2"}
- ? explicit key
  : value
- !!map {explicit: map}
- plain scalar row
- [a, sequence, row]
- - nested
  - block
- {"quoted key": 'single ''quoted''', "esc": "tab\\there \\u263a", plain: a:b, url: "http://x/y?z=1"}
- {inf: .inf, nan_is_str: nano, neg: -.5e+3, sexagesimal: 1:30, under: 1_000}
- {<<: {run_id: m, phase_id: x}, phase_id: y, "<<": quoted is a plain key}
"""


def _comparable(value):
    # repr tells 1 from 1.0 and True, which == does not.
    return repr(value)


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_yaml_rows_equal_what_safe_load_makes_of_the_same_text(monkeypatch, libyaml):
    monkeypatch.setattr(yaml, "__with_libyaml__", libyaml and yaml.__with_libyaml__)
    expected = yaml.safe_load(YAML_CORPUS)
    rows = list(yaml_rows(io.StringIO(YAML_CORPUS), PATH))
    assert _comparable(data_of(rows)) == _comparable(expected)
    assert [r.line for r in rows] == [1, 2, 15, 16, 17, 18, 19, 21, 22, 23, 24, 26, 27, 28]
    # across documents, too (anchors are per document, as in safe_load_all)
    doubled = YAML_CORPUS + "---\n" + YAML_CORPUS.replace("&base", "&base2").replace("*base", "*base2")
    assert _comparable(data_of(yaml_rows(io.StringIO(doubled), PATH))) == _comparable(
        [row for doc in yaml.safe_load_all(doubled) for row in doc])


def test_resolved_tags_kept_across_rows_follow_each_scalars_style_past_the_kept_limit():
    # The same text plain and quoted resolves differently (12 is an int, "12" text);
    # the kept tags must say so on every row, also once more texts than are kept appear.
    from batchdrain.importing.yaml_events import TAGS_KEPT

    rows = [f"- {{a: 12, b: '12', c: yes, d: \"yes\", e: {i}, f: '{i}', g: x{i}}}" for i in range(TAGS_KEPT + 50)]
    text = "\n".join([*rows, "- {a: '12', b: 12, c: 'yes', d: yes}"]) + "\n"
    assert _comparable(data_of(yaml_rows(io.StringIO(text), PATH))) == _comparable(yaml.safe_load(text))


def test_a_collection_as_a_key_is_refused_as_safe_load_refuses_it():
    with pytest.raises(BadBacklogFile, match=r"^backlog:2: row 2: not valid YAML: while constructing a mapping"):
        list(yaml_rows(io.StringIO("- {a: 1}\n- ? [complex, key]\n  : value\n"), PATH))


def test_a_json_file_that_is_yaml_from_its_start_is_read_as_yaml_as_before(tmp_path):
    path = tmp_path / "backlog.json"
    path.write_text(yaml.safe_dump(ROWS), encoding="utf-8")  # block YAML under a .json name
    assert [(p.run_id, p.phase_id) for p in BacklogFile(path).phases()] == [
        ("r", "a"), ("r", "b"), ("r ☃", "c\nd")]
    path.write_text("[{run_id: r, phase_id: a, command: [x]}]", encoding="utf-8")  # YAML flow style
    assert [p.phase_id for p in BacklogFile(path).phases()] == ["a"]
    # Not JSON and not YAML either: the error of the format the text looks like.
    path.write_text('[\n{"run_id": "r", "phase_id": "a" "command": ["x"]}]', encoding="utf-8")
    with pytest.raises(BadBacklogFile, match=r"backlog.json:2: row 1: not valid JSON: Expecting ','"):
        list(BacklogFile(path).phases())
    path.write_text("- [unclosed\n", encoding="utf-8")
    with pytest.raises(BadBacklogFile, match="not valid YAML"):
        list(BacklogFile(path).phases())
    # Once a row was read as JSON, the file is JSON.
    path.write_text('[{"run_id": "r", "phase_id": "a", "command": ["x"]}, {run_id: r}]', encoding="utf-8")
    with pytest.raises(BadBacklogFile, match="row 2: not valid JSON"):
        list(BacklogFile(path).phases())
