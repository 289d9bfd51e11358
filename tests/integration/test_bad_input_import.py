"""Bad input in import files and ``enqueue`` (issue 16): values taken exactly as written,
duplicate keys, alias bombs, surrogates and NUL bytes, sizes.

Each refusal is one line on stderr, exit 2, and nothing in the backlog afterwards; the
cases the issue asks for "on SQLite and Postgres alike" run on both (``database_url``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import SRC, attempts, cli, peak_rss_kib, phases


def _write(workdir: Path, name: str, text: str) -> str:
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def refused(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> str:
    """Run the CLI; it must refuse with one line and exit 2, leaving the backlog empty."""
    code, out, err = cli(capsys, *argv, "--database-url", url)
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in out + err and "controller error" not in err
    assert phases(url) == {}
    assert attempts(url) == []
    return lines[0]


# -- values exactly as written -----------------------------------------------------------

YAML_TYPED = """\
- run_id: 007
  phase_id: 1:30
  command: [echo, yes, no, on, off, 0x1F, ~, null, 1e3, 2024-01-01, 010, .inf, "007"]
  env: {A: on, B: 007, C: 0x1F, D: ~, E: 1:30, F: , G: 2001-12-14t21:59:43.10-05:00, H: 1_000}
  node_selector: {zone: 012}
  timeout: 1e3
  cpu: 0.50
- {run_id: '007', phase_id: "1:30b", command: [x], timeout: 90}
"""


def test_yaml_scalars_keep_the_text_as_written(workdir, database_url, capsys):
    code, _, err = cli(capsys, "import", _write(workdir, "typed.yaml", YAML_TYPED), "--database-url", database_url)
    assert code == 0, err
    stored = phases(database_url)
    assert set(stored) == {("007", "1:30"), ("007", "1:30b")}  # quoted or not, one run "007"
    spec = stored[("007", "1:30")].spec
    assert spec.command == ("echo", "yes", "no", "on", "off", "0x1F", "~", "null", "1e3", "2024-01-01",
                            "010", ".inf", "007")
    assert dict(spec.env) == {"A": "on", "B": "007", "C": "0x1F", "D": "~", "E": "1:30", "F": "",
                              "G": "2001-12-14t21:59:43.10-05:00", "H": "1_000"}
    assert dict(spec.node_selector) == {"zone": "012"}
    assert spec.cpu == "0.50"
    assert spec.timeout_seconds == 1000.0
    assert stored[("007", "1:30b")].spec.timeout_seconds == 90


def test_json_numbers_keep_their_text_where_text_is_expected(workdir, database_url, capsys):
    rows = ('[{"run_id": 7, "phase_id": 1e3, "command": ["sleep", 1.50, 1E3],'
            ' "env": {"N": 0.10, "M": -0}, "timeout_seconds": 1e3}]')
    code, _, err = cli(capsys, "import", _write(workdir, "n.json", rows), "--database-url", database_url)
    assert code == 0, err
    ((key, phase),) = phases(database_url).items()
    assert key == ("7", "1e3")
    assert phase.spec.command == ("sleep", "1.50", "1E3")
    assert dict(phase.spec.env) == {"N": "0.10", "M": "-0"}
    assert phase.spec.timeout_seconds == 1000.0


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("hex-timeout.yaml", "- {run_id: r, phase_id: p, command: [x], timeout: 0x1F}\n",
     "row 1: timeout '0x1F' is not a plain decimal number"),
    ("sexagesimal-timeout.yaml", "- {run_id: r, phase_id: p, command: [x], timeout: 1:30}\n",
     "row 1: timeout '1:30' is not a plain decimal number"),
    ("octal-timeout.yaml", "- {run_id: r, phase_id: p, command: [x], timeout: 010}\n",
     "row 1: timeout '010' is not a plain decimal number"),
    ("bool-env.json", '[{"run_id": "r", "phase_id": "p", "command": ["x"], "env": {"A": true}}]',
     "row 1: env A must be text, got true"),
    ("null-env.json", '[{"run_id": "r", "phase_id": "p", "command": ["x"], "env": {"A": null}}]',
     "row 1: env A must be text, got null"),
    ("bool-id.json", '[{"run_id": true, "phase_id": "p", "command": ["x"]}]', "row 1: run_id must be text"),
    ("nan.jsonl", '{"run_id": "r", "phase_id": "p", "command": ["x"], "timeout": NaN}\n',
     "row 1: not valid JSON: NaN is not a JSON number"),
])
def test_values_that_cannot_be_kept_as_written_are_refused_with_their_row(workdir, capsys, name, text,
                                                                          fragment):
    url = f"sqlite:///{workdir / 'b.db'}"
    assert fragment in refused(capsys, url, "import", _write(workdir, name, text))


# -- duplicate keys ------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("row.yaml", "- run_id: a\n  phase_id: b\n  command: [x]\n  run_id: c\n",
     "row.yaml:4: row 1: not valid YAML: duplicate key 'run_id' (first on line 1)"),
    ("env.yaml", "- {run_id: a, phase_id: b, command: [x]}\n- run_id: a\n  phase_id: c\n  command: [x]\n"
                 "  env:\n    A: 1\n    A: 2\n", "env.yaml:7: row 2: not valid YAML: duplicate key 'A'"),
    ("as-written.yaml", "- {run_id: a, phase_id: b, command: [x], env: {on: 1, 'on': 2}}\n",
     "duplicate key 'on'"),
    ("anchored.yaml", "- &r {run_id: a, phase_id: b, command: [x], phase_id: c}\n",
     "anchored.yaml:1: row 1: not valid YAML: duplicate key 'phase_id'"),
    ("top.yaml", "phases: [{run_id: a, phase_id: b, command: [x]}]\nphases: []\n",
     "top.yaml:2: not valid YAML: duplicate key 'phases'"),
    ("row.json", '[{"run_id": "a", "phase_id": "b", "command": ["x"]},\n'
                 ' {"run_id": "a",\n  "phase_id": "c",\n  "command": ["x"],\n  "phase_id": "d"}]',
     "row.json:5: row 2: duplicate key 'phase_id'"),
    ("env.json", '[{"run_id": "a", "phase_id": "b", "command": ["x"], "env": {"A": "1", "A": "2"}}]',
     "env.json:1: row 1: duplicate key 'A'"),
    ("top.json", '{"phases": [{"run_id": "a", "phase_id": "b", "command": ["x"]}],\n "phases": []}',
     "top.json:2: duplicate key 'phases' (first on line 1)"),
    ("rows.jsonl", '{"run_id": "a", "phase_id": "b", "command": ["x"]}\n'
                   '{"run_id": "a", "phase_id": "c", "command": ["x"], "command": ["y"]}\n',
     "rows.jsonl:2: row 2: duplicate key 'command'"),
])
def test_a_key_written_twice_is_refused_with_its_line(workdir, capsys, name, text, fragment):
    url = f"sqlite:///{workdir / 'b.db'}"
    assert fragment in refused(capsys, url, "import", _write(workdir, name, text))


def test_merged_keys_may_still_be_overridden(workdir, capsys):
    text = ("defaults: &d {run_id: a, command: [x], phase_id: none}\n"
            "phases:\n  - {<<: *d, phase_id: b}\n  - {<<: *d, phase_id: c, command: [y]}\n")
    url = f"sqlite:///{workdir / 'b.db'}"
    assert cli(capsys, "import", _write(workdir, "m.yaml", text), "--database-url", url)[0] == 0
    assert {k: p.spec.command for k, p in phases(url).items()} == {("a", "b"): ("x",), ("a", "c"): ("y",)}


# -- alias bombs and huge fields: refused in bounded memory --------------------------------

MEMORY_CAP = 2 << 30  # the child's address space: main (unbounded) dies here instead of the machine


def _import_in_child(workdir: Path, file: str) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of ``batchdrain import`` in its own process."""

    return peak_rss_kib(["prlimit", f"--as={MEMORY_CAP}", sys.executable, "-m", "batchdrain.cli", "import",
                         file, "--database-url", f"sqlite:///{workdir / 'b.db'}"], cwd=workdir)


def _bomb(levels: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    last = chr(ord("a") + levels - 1)
    lines.append(f"phases:\n  - {{run_id: r, phase_id: p, command: [x], env: {{A: *{last}}}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["beside the rows", "inside a row"])
def test_an_alias_bomb_of_a_few_hundred_bytes_is_refused_in_small_memory(workdir, where):
    text = _bomb()
    if where == "inside a row":  # the anchors inside the row itself
        text = "phases:\n  - run_id: r\n    phase_id: p\n    command: [x]\n    env:\n" + "".join(
            f"      {line}\n" for line in text.splitlines()[:-2]) + "      Z: *i\n"
    path = _write(workdir, "bomb.yaml", text)
    assert os.path.getsize(path) < 1024
    code, err, peak_kb = _import_in_child(workdir, path)
    assert code == 2, err
    assert "aliases expand to more than 1048576 characters" in err
    assert len(err.strip().splitlines()) == 1, err
    assert peak_kb < 200_000, peak_kb


def test_an_alias_to_a_node_that_contains_it_is_refused(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    line = refused(capsys, url, "import", _write(
        workdir, "self.yaml", "- {run_id: r, phase_id: p, command: [x], env: &e {A: *e}}\n"))
    assert "self.yaml:1: row 1: not valid YAML: alias *e refers to a node that contains it" in line


HUGE = 200 * 1000 * 1000


def _huge_file(path: Path, fmt: str) -> None:
    head = {"json": '[{"run_id": "r", "phase_id": "p", "command": ["x", "',
            "jsonl": '{"run_id": "r", "phase_id": "p", "command": ["x", "',
            "yaml": '- {run_id: r, phase_id: p, command: [x, "'}[fmt]
    tail = {"json": '"]}]\n', "jsonl": '"]}\n', "yaml": '"]}\n'}[fmt]
    block = "y" * (1 << 20)
    with path.open("w", encoding="utf-8") as out:
        out.write(head)
        for _ in range(HUGE // len(block)):
            out.write(block)
        out.write(tail)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "yaml"])
def test_a_200_mb_string_field_is_refused_without_reading_it_whole(workdir, fmt):
    path = workdir / f"huge.{fmt}"
    _huge_file(path, fmt)
    try:
        code, err, peak_kb = _import_in_child(workdir, str(path))
    finally:
        path.unlink()
    assert code == 2, err
    assert "longer than 16777216 characters (16 MiB); a phase is at most 1 MiB" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert peak_kb < 250_000, peak_kb  # the file is 200 MB; a row is never held past 16 MiB


# -- surrogates and NUL bytes, on SQLite and Postgres ---------------------------------------

GOOD_ROW = '{"run_id": "r", "phase_id": "ok", "command": ["x"]}'


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_escaped_surrogate_pairs_decode_to_their_character(workdir, database_url, capsys, fmt):
    rows = [{"run_id": "r", "phase_id": "p\\ud83d\\ude00", "command": ["echo", "\\ud83d\\ude00"],
             "env": {"E": "x\\uD83D\\uDE00y"}}]
    text = json.dumps(rows).replace("\\\\", "\\")  # the escapes as a person writes them
    if fmt == "yaml":
        text = "- " + text[1:-1] + "\n- {run_id: r, phase_id: q, command: [x]}\n"
    code, _, err = cli(capsys, "import", _write(workdir, f"s.{fmt}", text), "--database-url", database_url)
    assert code == 0, err
    phase = phases(database_url)[("r", "p😀")]
    assert phase.spec.command == ("echo", "😀")
    assert dict(phase.spec.env) == {"E": "x😀y"}


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("lone-id.json", f'[{GOOD_ROW}, {{"run_id": "r", "phase_id": "p\\ud83d", "command": ["x"]}}]',
     "row 2: phase id is not valid UTF-8 text: lone surrogate \\ud83d at character 2"),
    ("lone-arg.yaml", f'- {GOOD_ROW}\n- {{run_id: r, phase_id: p, command: [x, "a\\udc80"]}}\n',
     "row 2: command argument 2 is not valid UTF-8 text: lone surrogate \\udc80"),
    ("nul-env.json", f'[{GOOD_ROW}, {{"run_id": "r", "phase_id": "p", "command": ["x"], "env": {{"A": "1\\u0000"}}}}]',
     "row 2: env A value contains a NUL byte"),
    ("nul-arg.yaml", f'- {GOOD_ROW}\n- {{run_id: r, phase_id: p, command: ["a\\0b"]}}\n',
     "row 2: command argument 1 contains a NUL byte (at character 2)"),
    ("nul-id.jsonl", f'{GOOD_ROW}\n{{"run_id": "r\\u0000", "phase_id": "p", "command": ["x"]}}\n',
     "row 2: run id contains a NUL byte"),
    ("nul-selector.json", f'[{GOOD_ROW}, {{"run_id": "r", "phase_id": "p", "command": ["x"], '
                          f'"node_selector": {{"zone": "a\\u0000"}}}}]',
     "row 2: node_selector zone value contains a NUL byte"),
])
def test_lone_surrogates_and_nul_bytes_are_refused_with_their_row(workdir, database_url, capsys, name, text,
                                                                  fragment):
    assert fragment in refused(capsys, database_url, "import", _write(workdir, name, text))


def test_enqueue_refuses_arguments_that_are_not_utf8(workdir):
    """Bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape)."""
    url = f"sqlite:///{workdir / 'b.db'}"
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = [sys.executable.encode(), b"-m", b"batchdrain.cli", b"enqueue", b"--database-url", url.encode(),
            b"--run-id", b"r", b"--phase-id", b"p", b"--", b"echo", b"caf\xe9"]
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, check=False)
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert "command argument 2 is not valid UTF-8 text: lone surrogate \\udce9 at character 4" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (workdir / "b.db").exists()  # refused before the database was opened


# -- sizes ---------------------------------------------------------------------------------

def _row(**fields: object) -> str:
    return json.dumps([{"run_id": "r", "phase_id": "ok", "command": ["x"]},
                       {"run_id": "r", "phase_id": "p", "command": ["x"], **fields}])


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"command": ["echo", "a" * 131072]}, "row 2: command argument 2 is 131072 bytes, at most 131071"),
    ({"command": ["echo", "é" * 65536]}, "row 2: command argument 2 is 131072 bytes"),
    ({"env": {"BIG": "v" * (131072 - 4)}}, "row 2: env BIG is 131072 bytes as NAME=value, at most 131071"),
    ({"command": ["echo"] + ["a" * 100_000] * 11}, "row 2: phase is 1100004 bytes of text, at most 1048576"),
    ({"node_selector": {f"k{i}": "v" * 60_000 for i in range(18)}}, "row 2: phase is"),
])
def test_values_past_their_bounds_are_refused_at_import(workdir, database_url, capsys, fields, fragment):
    assert fragment in refused(capsys, database_url, "import", _write(workdir, "big.json", _row(**fields)))


def test_values_up_to_their_bounds_are_accepted(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    text = _row(command=["echo", "a" * 131071], env={"BIG": "v" * (131071 - 4)})
    assert cli(capsys, "import", _write(workdir, "ok.json", text), "--database-url", url)[0] == 0
    assert len(phases(url)) == 2


def test_enqueue_refuses_an_argument_longer_than_exec_takes(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    code, _, err = cli(capsys, "enqueue", "--database-url", url, "--run-id", "r", "--phase-id", "p", "--",
                       "echo", "a" * 200_000)
    assert code == 2, err
    assert "command argument 2 is 200000 bytes, at most 131071 (Linux MAX_ARG_STRLEN)" in err
    assert not (workdir / "b.db").exists()


def test_an_argument_list_past_this_hosts_arg_max_is_refused(workdir):
    """ARG_MAX is a quarter of the stack limit: with 1 MiB of stack, 256 KiB for exec."""
    text = _row(command=["echo"] + ["a" * 60_000] * 4)  # 240 KB: past 256 KiB less 64 KiB of headroom
    path = _write(workdir, "args.json", text)

    env = {**os.environ, "PYTHONPATH": SRC}
    url = f"sqlite:///{workdir / 'b.db'}"
    done = subprocess.run(["prlimit", f"--stack={1 << 20}:", sys.executable, "-m", "batchdrain.cli", "import",
                           path, "--database-url", url], cwd=workdir, env=env, capture_output=True, check=False)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "row 2: command and env are 240065 bytes for exec, at most 196608 (this host's ARG_MAX 262144" in err
    assert phases(url) == {}
