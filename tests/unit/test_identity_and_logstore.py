"""Identity masking and the filesystem LogSink."""

from __future__ import annotations

import hashlib

from batchdrain.identity import Identity, identity_header, mask_secrets, mask_url
from batchdrain.logstore import FileLogSink, legacy_log_key, log_key, open_log_sink, safe_name
from batchdrain.settings import Settings


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql://app:s3cr3t@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert mask_url("sqlite:///./batchdrain.db") == "sqlite:///./batchdrain.db"
    assert "s3cr3t" not in mask_secrets("could not connect to postgresql://app:s3cr3t@db/x", [])
    assert mask_secrets("token=abc", ["abc"]) == "token=***"


def test_identity_env_names_are_configurable_and_header_masks():
    settings = Settings(env_database_url="APP_DB", env_api_url="APP_API")
    ident = Identity("s", "r", "p", 2, "postgresql://u:pw@h/d", "http://api")
    env = ident.env(settings)
    assert env["APP_DB"] == "postgresql://u:pw@h/d" and env["APP_API"] == "http://api"
    assert env["BATCHDRAIN_ATTEMPT"] == "2" and env["PYTHONUTF8"] == "1"
    header = identity_header(ident, {"node": "n1"})
    assert "pw" not in header and "DATABASE_URL: postgresql://u:***@h/d" in header
    assert "[batchdrain] node: n1" in header


def test_safe_names_are_distinct_and_filesystem_safe():
    names = {safe_name(v) for v in ("a/b", "a_b", "a b", "a%2Fb", "☃", "..", "x" * 255)}
    assert len(names) == 7
    assert all("/" not in n and len(n) < 100 and not n.startswith(".") for n in names)
    assert log_key("s", "run", "ph", 3, "stdout") == "s/runs/run/ph.attempt-3.stdout.log"
    assert log_key("s", "run", "ph", 3, "combined") == "s/runs/run/ph.attempt-3.log"
    # Stores written before keys became injective stay readable on adoption.
    assert legacy_log_key("s", "run", "ph", 3, "stdout") == "s/run__ph.attempt-3.stdout.log"
    assert legacy_log_key("s", "run", "ph", 3, "combined") == "s/run__ph.attempt-3.log"


# Ids chosen to meet the separators of the old keys ("__", ".attempt-N", the 80-char cut
# and its "-<hash8>" suffix), 255 characters long, unicode, dots, slashes and percents.
_TRICKY = ["a", "a__b", "b__c", "c", "a_", "_b", "x.attempt-1", "x.attempt-1.stdout", "log", "runs",
           "session.json", ".", "..", ".hidden", "a/b", "a%2Fb", "a b", "a_b", "☃", "x" * 255, "x" * 254 + "y",
           "é" * 255, "y" * 80, "y" * 81, "q" * 31 + "+" + "0" * 64]


def test_log_keys_are_injective_for_any_ids():
    seen: dict[str, tuple[str, str, int, str]] = {}
    for run in _TRICKY:
        for phase in _TRICKY:
            for attempt in (1, 11):
                for stream in ("stdout", "stderr", "combined"):
                    key = log_key("batch-drain-20260101-000000", run, phase, attempt, stream)
                    assert key not in seen, (key, seen.get(key), (run, phase, attempt, stream))
                    seen[key] = (run, phase, attempt, stream)
                    assert all(0 < len(part) <= 120 and part not in (".", "..") for part in key.split("/"))
    # the report files of a session share its folder with no log
    assert not any(k.split("/")[1].startswith("session.") for k in seen)


def test_the_old_log_keys_collided():
    """What bug 3 was: two phases of different runs wrote one file."""
    assert legacy_log_key("s", "a__b", "c", 1, "stdout") == legacy_log_key("s", "a", "b__c", 1, "stdout")
    assert log_key("s", "a__b", "c", 1, "stdout") != log_key("s", "a", "b__c", 1, "stdout")


def test_file_sink_streams_resumes_and_hashes(tmp_path):
    sink = FileLogSink(tmp_path)
    writer = sink.open("s/a.log", stream="stdout")
    writer.write(b"hello \xff\xfe")
    writer.write(b"")
    first = writer.close()
    resumed = sink.open("s/a.log", stream="stdout", resume=True)
    resumed.write(b"world\n")
    pointer = resumed.close()
    data = b"hello \xff\xfeworld\n"
    assert (tmp_path / "s/a.log").read_bytes() == data
    assert pointer.size_bytes == len(data) and pointer.sha256 == hashlib.sha256(data).hexdigest()
    assert first.size_bytes == 8
    assert b"".join(sink.read(pointer.url)) == data


def test_fsspec_sink_uploads_on_close():
    sink = open_log_sink("memory://bd-test/logs")
    writer = sink.open("s/x.log", stream="stderr")
    writer.write(b"abc")
    pointer = writer.close()
    assert pointer.url == "memory://bd-test/logs/s/x.log"
    assert b"".join(sink.read(pointer.url)) == b"abc"
    sink.put("s/report.json", b"{}")
    assert b"".join(sink.read(sink.url_for("s/report.json"))) == b"{}"


def test_an_id_with_a_newline_cannot_forge_a_header_line():
    ident = Identity("s", "run\n[batchdrain] DATABASE_URL: postgresql://forged", "ph\r\x00", 1, "sqlite:///x", None)
    header = identity_header(ident, {"node": "n1\nfake"})
    lines = header.splitlines()
    assert len(lines) == 9  # banner, session, run, phase, attempt, node, DATABASE_URL, API_URL, end: no more
    assert sum(line.startswith("[batchdrain] DATABASE_URL: ") for line in lines) == 1
    assert "[batchdrain] run: run\\n[batchdrain] DATABASE_URL: postgresql://forged" in lines
    assert "[batchdrain] phase: ph\\r\\x00" in lines
