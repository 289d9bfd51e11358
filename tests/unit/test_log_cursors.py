"""Log cursors against the framings the kubelet really serves (Kubernetes 1.33).

The served bytes below are what ``ReadLogs`` (k8s.io/cri-client/pkg/logs) makes of a CRI
log file: with ``timestamps=true`` a record gets a timestamp when the record before it
in the file, of either stream, ended a line. Recorded on the e2e cluster for the file

    16:41:34.005270115Z stderr F err-1
    16:41:34.205640185Z stdout P <16384 x A>
    16:41:34.205699814Z stdout F <3616 x A><100 x B>
    16:41:34.4060745Z   stderr F err-2
    16:41:34.809365003Z stderr P tail-err
    16:41:34.80941629Z  stdout P tail-out

Asked for one stream, the kubelet stamps stdout's P record (it follows stderr's F) but
neither its F (after its own P) nor its tail (after stderr's P): timestamps cannot be
told from content there, so one stream is read without them (``ByteCursor``).
"""

from __future__ import annotations

import hashlib

import pytest

from batchdrain.executors.kubernetes.cursor import ByteCursor, LineCursor

TS = "2026-12-01T16:41:34.{}Z "
LONG = b"A" * 20000 + b"B" * 100 + b"\n"


def stamp(nanos: str) -> bytes:
    return TS.format(nanos).encode()


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def feed(cursor: ByteCursor | LineCursor, data: bytes, *, chunk: int) -> None:
    for start in range(0, len(data), chunk):
        cursor.feed(data[start:start + chunk])


# -- the combined log (timestamps after every newline, and only there) -----------------


def test_line_cursor_strips_the_combined_framing_to_the_interleaved_bytes() -> None:
    served = (stamp("005270115") + b"err-1\n" + stamp("205640185") + LONG + stamp("406074500") + b"err-2\n"
              + stamp("809365003") + b"tail-errtail-out")
    for chunk in (1, 7, 4096, len(served)):
        out = Collect()
        feed(LineCursor(out), served, chunk=chunk)
        assert bytes(out.data) == b"err-1\n" + LONG + b"err-2\ntail-errtail-out", chunk


def test_line_cursor_drops_the_untimed_rest_of_a_line_begun_before_since_time() -> None:
    """Failed before: the untimed head of a resumed response was stored a second time.

    File: 00.3 stdout P "aaa" | 01.2 stdout F "ddd\\n" | 01.5 stderr F "eee\\n" |
    01.8 stdout F "fff\\n". Resuming from second 01, the kubelet sends the record at 01.2
    untimed (the one before it, at 00.3, was a P) although it was stored already.
    """
    out = Collect()
    cursor = LineCursor(out)
    cursor.feed(b"2025-01-01T12:00:00.3Z aaaddd\n2025-01-01T12:00:01.5Z eee\n2025-01-01T12:00:01.8Z f")
    assert cursor.since_time() == "2025-01-01T12:00:01Z"
    cursor.new_connection()
    feed(cursor, b"ddd\n2025-01-01T12:00:01.5Z eee\n2025-01-01T12:00:01.8Z fff\n", chunk=3)
    assert bytes(out.data) == b"aaaddd\neee\nfff\n"


def test_line_cursor_resumes_inside_the_line_right_after_an_untimed_head() -> None:
    """The head ends at its newline: the line after it (half stored) goes on exactly."""
    out = Collect()
    cursor = LineCursor(out)
    cursor.feed(b"2025-01-01T12:00:00.3Z aaaddd\n2025-01-01T12:00:01.5Z ee")
    cursor.new_connection()
    feed(cursor, b"ddd\n2025-01-01T12:00:01.5Z eee\n", chunk=2)
    assert bytes(out.data) == b"aaaddd\neee\n"


# -- one stream, served without timestamps --------------------------------------------------


def test_byte_cursor_stores_what_is_served_and_a_reread_goes_on_after_it() -> None:
    served = LONG + b"2026-12-01T16:41:34.205640185Z looks like a stamp\n\xff\xfe\x00 binary tail"
    out = Collect()
    cursor = ByteCursor(out)
    assert cursor.since_time() is None and cursor.timestamps is False
    feed(cursor, served[:12345], chunk=1000)  # dropped here
    for cut in (5000, 12345, 20050):  # read again from the start, dropped again (or not) each time
        cursor.new_connection()
        feed(cursor, served[:cut], chunk=777)
        assert bytes(out.data) == served[:max(cut, 12345)]
    cursor.new_connection()
    feed(cursor, served, chunk=4096)
    cursor.end_connection(complete=True)
    assert bytes(out.data) == served and cursor.stored == len(served) and cursor.problem is None


def test_byte_cursor_stores_nothing_more_when_the_reread_bytes_differ() -> None:
    out = Collect()
    cursor = ByteCursor(out)
    cursor.feed(b"line one\nline t")
    cursor.new_connection()
    cursor.feed(b"line ONE\nline two\nthree\n")  # rotated, or another file: not ours
    assert bytes(out.data) == b"line one\nline t"
    assert cursor.problem is not None
    assert "no longer begins with the 15 bytes stored but with b'line ONE\\nline two\\nthree\\n'" in cursor.problem
    cursor.new_connection()
    cursor.feed(b"line one\nline two\n")
    assert bytes(out.data) == b"line one\nline t"  # a cursor with a problem stays stopped


@pytest.mark.parametrize("complete", [True, False])
def test_byte_cursor_reports_a_whole_read_shorter_than_what_was_stored(complete: bool) -> None:
    out = Collect()
    cursor = ByteCursor(out)
    cursor.feed(b"0123456789")
    cursor.new_connection()
    cursor.feed(b"01234")
    cursor.end_connection(complete=complete)  # not complete: a follow we cut, no verdict
    assert (cursor.problem is not None) is complete
    assert bytes(out.data) == b"0123456789"


def test_byte_cursor_adopting_checks_the_bytes_a_previous_controller_stored() -> None:
    stored = b"before the crash\n"
    served = stored + b"after\n"
    out = Collect()
    cursor = ByteCursor(out, skip_content=len(stored), stored_digest=hashlib.sha256(stored))
    feed(cursor, served, chunk=5)
    assert bytes(out.data) == b"after\n" and cursor.problem is None

    corrupt = ByteCursor(Collect(), skip_content=len(stored), stored_digest=hashlib.sha256(b"x" * len(stored)))
    corrupt.feed(served)
    assert corrupt.problem is not None and corrupt.stored == 0

    unknown = Collect()  # no digest (the stored bytes changed while being read): skip unchecked
    ByteCursor(unknown, skip_content=len(stored)).feed(served)
    assert bytes(unknown.data) == b"after\n"


def test_byte_cursor_keeps_a_kubelet_error_sent_as_the_body_out_of_the_log() -> None:
    """For stdout the kubelet answers 200 before asking the runtime; a pod on its way out
    then gets its error as the body (seen on the e2e cluster for a deleted pod)."""
    out = Collect()
    cursor = ByteCursor(out)
    cursor.feed(b"sleeping\n")
    cursor.new_connection()  # the final read, once the container is gone
    cursor.feed(b"unable to retrieve container logs for containerd://4960cecfaa9f")
    cursor.end_connection(complete=True)
    assert bytes(out.data) == b"sleeping\n"
    assert cursor.problem is not None and "b'unable to retrieve container logs" in cursor.problem
