"""The bad input table (README "Bad input"): each case is one clear line, exit 2, nothing written.

Every case runs the real CLI against a real SQLite backlog holding one phase, and
checks afterwards that the backlog and the session table are exactly as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import attempts, cli, phases

LONG_UNICODE = "é" * 256


def _backlog(workdir: Path, name: str, text: str) -> str:
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# (case id, argv builder: (workdir, db_url) -> argv, fragment expected in the error line)
CASES = [
    ("unknown-run-id", lambda w, u: ["drain", "--database-url", u, "--run-id", "nope"], "unknown run id"),
    ("parallelism-zero", lambda w, u: ["drain", "--database-url", u, "--parallelism", "0"], "parallelism"),
    ("batch-size-negative", lambda w, u: ["drain", "--database-url", u, "--batch-size", "-3"], "batch_size"),
    ("max-attempts-text", lambda w, u: ["drain", "--database-url", u, "--max-attempts", "many"], "max-attempts"),
    ("executor-unknown", lambda w, u: ["drain", "--database-url", u, "--executor", "slurm"], "executor"),
    ("tolerations-not-json", lambda w, u: ["drain", "--database-url", u, "--tolerations", "{oops"], "JSON"),
    ("node-selector-no-equals", lambda w, u: ["drain", "--database-url", u, "--node-selector", "zone"],
     "KEY=VALUE"),
    ("metrics-port-too-big", lambda w, u: ["drain", "--database-url", u, "--metrics-port", "70000"],
     "metrics_port"),
    ("db-url-malformed", lambda w, u: ["runs", "--database-url", "::not a url::"], "malformed database URL"),
    ("db-url-unsupported", lambda w, u: ["runs", "--database-url", "oracle://u@h/db"], "unsupported database"),
    ("db-url-unreachable-masked", lambda w, u: ["runs", "--database-url",
                                                "postgresql://app:pw-SECRET@127.0.0.1:1/x",
                                                "--retry-attempts", "1"], "app:***@127.0.0.1"),
    ("db-dir-missing", lambda w, u: ["runs", "--database-url", "sqlite:////no/such/dir/x.db"],
     "does not exist"),
    ("enqueue-duplicate", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id", "p",
                                        "--", "true"], "already in the backlog"),
    ("enqueue-no-command", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id", "q"],
     "Missing argument"),
    ("enqueue-bad-image", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id", "q",
                                        "--image", "Not An Image", "--", "true"], "invalid image reference"),
    ("enqueue-negative-timeout", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id",
                                               "q", "--timeout", "-5", "--", "true"], "timeout"),
    ("enqueue-bad-env-name", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id", "q",
                                           "--env", "1BAD=x", "--", "true"], "environment variable name"),
    ("enqueue-env-no-equals", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id",
                                            "q", "--env", "JUSTNAME", "--", "true"], "KEY=VALUE"),
    ("enqueue-bad-memory", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id", "q",
                                         "--memory", "12 gigs", "--", "true"], "quantity"),
    ("enqueue-id-too-long", lambda w, u: ["enqueue", "--database-url", u, "--run-id", LONG_UNICODE,
                                          "--phase-id", "q", "--", "true"], "at most 255"),
    ("enqueue-blank-phase-id", lambda w, u: ["enqueue", "--database-url", u, "--run-id", "r", "--phase-id",
                                             "  ", "--", "true"], "phase id is empty"),
    ("import-missing-file", lambda w, u: ["import", str(w / "nope.yaml"), "--database-url", u], "cannot read"),
    ("import-not-yaml", lambda w, u: ["import", _backlog(w, "x.yaml", "- [unclosed"), "--database-url", u],
     "not valid YAML"),
    ("import-not-a-list", lambda w, u: ["import", _backlog(w, "x.yaml", "run_id: r\n"), "--database-url", u],
     "expected a list"),
    ("import-row-missing-command", lambda w, u: ["import", _backlog(
        w, "x.yaml", "- {run_id: a, phase_id: b, command: [x]}\n- {run_id: a, phase_id: c}\n"),
        "--database-url", u], "row 2: missing command"),
    ("import-command-is-string", lambda w, u: ["import", _backlog(
        w, "x.yaml", "- {run_id: a, phase_id: b, command: 'echo hi'}\n"), "--database-url", u],
     "row 1: command must be a list"),
    ("import-unknown-field", lambda w, u: ["import", _backlog(
        w, "x.yaml", "- {run_id: a, phase_id: b, command: [x], retries: 3}\n"), "--database-url", u],
     "unknown field(s) retries"),
    ("import-duplicate-rows", lambda w, u: ["import", _backlog(
        w, "x.json", '[{"run_id": "a", "phase_id": "b", "command": ["x"]},'
                     ' {"run_id": "a", "phase_id": "b", "command": ["x"]}]'), "--database-url", u],
     "row 2: duplicate of row 1"),
    ("import-bad-pull-policy", lambda w, u: ["import", _backlog(
        w, "x.yaml", "- {run_id: a, phase_id: b, command: [x], image_pull_policy: Sometimes}\n"),
        "--database-url", u], "image_pull_policy"),
    ("import-not-utf8", lambda w, u: ["import", _write_bytes(w / "x.yaml", b"- {run_id: \xff}\n"),
                                      "--database-url", u], "cannot read"),
    ("report-unknown-session", lambda w, u: ["report", "batch-drain-19990101-000000", "--database-url", u],
     "unknown session"),
    ("logs-unknown-session", lambda w, u: ["logs", "batch-drain-19990101-000000", "p", "--database-url", u],
     "unknown session"),
    ("retry-unknown-run", lambda w, u: ["retry", "--run-id", "ghost", "--database-url", u], "unknown run id"),
    ("kubeconfig-missing", lambda w, u: ["drain", "--database-url", u, "--executor", "kubernetes",
                                         "--kubeconfig", str(w / "no-such-kubeconfig")], "kubeconfig"),
    ("kubeconfig-garbage", lambda w, u: ["drain", "--database-url", u, "--executor", "kubernetes",
                                         "--kubeconfig", _backlog(w, "kc", "not: [a kubeconfig")], "kubeconfig"),
    ("kubeconfig-unknown-context", lambda w, u: ["drain", "--database-url", u, "--executor", "kubernetes",
                                                 "--kubeconfig", _backlog(w, "kc2", _KUBECONFIG),
                                                 "--context", "nope"], "nope"),
]

_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""


def _write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(("case", "argv", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(case, argv, fragment, workdir, capsys):
    url = f"sqlite:///{workdir / 'backlog.db'}"
    assert cli(capsys, "enqueue", "--database-url", url, "--run-id", "r", "--phase-id", "p", "--", "true")[0] == 0
    before = {k: (p.state, p.attempts) for k, p in phases(url).items()}
    code, out, err = cli(capsys, *argv(workdir, url))
    assert code == 2, (out, err)
    assert fragment in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if not err.startswith("Usage:"):  # typer's usage errors come with their usage lines
        assert [ln for ln in lines if "error" in ln.lower()] == [lines[-1]], err
    assert "pw-SECRET" not in out + err
    assert "Traceback" not in out + err
    assert {k: (p.state, p.attempts) for k, p in phases(url).items()} == before
    assert attempts(url) == []


def test_the_table_is_big_enough():
    assert len(CASES) >= 25


def test_ids_of_255_unicode_chars_are_accepted(workdir, capsys):
    url = f"sqlite:///{workdir / 'ok.db'}"
    run_id, phase_id = "r/☃ " + "é" * 251, "p " + "ü" * 253
    assert len(run_id) == len(phase_id) == 255
    code, _, err = cli(capsys, "enqueue", "--database-url", url, "--run-id", run_id, "--phase-id", phase_id,
                       "--", "true")
    assert code == 0, err
    assert cli(capsys, "drain", "--database-url", url, "--executor", "local", "--quiet")[0] == 0
    (row,) = attempts(url)
    assert (row.run_id, row.phase_id, row.failure_class) == (run_id, phase_id, "succeeded")
    assert all(Path(p.url).is_file() for p in row.logs)
