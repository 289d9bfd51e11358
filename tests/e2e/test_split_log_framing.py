"""Split stdout/stderr logs stay byte-exact however the two streams interleave.

With ``timestamps=true&stream=Stdout|Stderr`` the kubelet decides whether a CRI record
gets a timestamp from the previous record of *either* stream (``isNewLine`` in
``k8s.io/cri-client/pkg/logs.ReadLogs``): a stdout line longer than containerd's CRI
record size (16 KiB) that overlaps stderr writes comes back with a timestamp inside the
line, and the stderr lines written meanwhile come back without one. The phase below
makes exactly those framings (and partial lines, binary bytes, lines that look like a
timestamp, an unterminated tail on each stream) and the stored logs must equal what it
wrote, byte for byte.

The pauses only make the interleaving the scenario is about likely; the verdict does
not depend on them: the stored bytes must equal the written ones in any interleaving.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.e2e.conftest import Drainer
from tests.e2e.test_kubernetes_drain import all_attempts, payload, py

# The phase's writes, shared by the phase (which runs it) and the test (which computes
# what must be stored from it). No "\r\n" anywhere: containerd's CRI logger turns it
# into "\n" before the kubelet sees it; a lone "\r" survives.
SCRIPT = r'''
def steps():
    """(fd, bytes, pause in seconds), in the order the phase writes them."""
    binary = bytes(b for b in range(256) if b not in (10, 13))  # not UTF-8, no newline
    out = []
    # (a) one 1 MiB stdout line in 64 KiB writes, stderr lines (one of them looking like
    # a kubelet timestamp) while it is open: containerd writes it as 16 KiB P records
    # with stderr F records between them.
    for k in range(16):
        out.append((1, (binary[k:] + binary[:k]) * 257, 0.05))  # 64 KiB + 254 bytes
        err = b"2025-01-02T03:04:05.123456789Z looks like a stamp\n" if k == 7 else b"e-a-%d\n" % k
        out.append((2, err, 0.05))
    out.append((1, b"\n", 0.05))
    # (b) partial lines (no newline yet) on one stream while the other writes short lines
    for i in range(4):
        out.append((1, b"partial-out-%d " % i, 0.05))
        out.append((2, b"short-err-%d\n" % i, 0.05))
        out.append((1, b"rest-out-%d \r lone CR\n" % i, 0.05))
        out.append((2, b"partial-err-%d " % i, 0.05))
        out.append((1, b"short-out-%d\n" % i, 0.05))
        out.append((2, b"rest-err-%d\n" % i, 0.05))
    # (c) long lines on both streams, alternating mid-line
    for i in range(6):
        rot = binary[i * 37 % len(binary):] + binary[:i * 37 % len(binary)]
        out.append((1, (rot * 80)[:20000], 0.05))
        out.append((2, (rot * 80)[1:20001], 0.05))
        out.append((1, (rot * 120)[:30000] + b"\n", 0.05))
        out.append((2, (rot * 70)[:17000] + b"\n", 0.05))
    # (d) short binary lines, and a stdout line looking like a stamp after a stderr partial
    out.append((2, b"\xc3\x28 not utf-8 \xff\xfe ", 0.05))
    out.append((1, b"2025-01-02T03:04:05.123456789Z also looks like one\n", 0.05))
    out.append((2, binary[::-1] + b"\n", 0.05))
    out.append((1, binary + b"\n", 0.05))
    return out
'''

PHASE = SCRIPT + r'''
import hashlib, os, time

def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]

digests = {1: hashlib.sha256(), 2: hashlib.sha256()}
for fd, data, pause in steps():
    write_all(fd, data)
    digests[fd].update(data)
    time.sleep(pause)
# (e) an unterminated tail on each stream: the sha256 of what came before it
write_all(1, b"tail-out " + digests[1].hexdigest().encode())
time.sleep(0.05)
write_all(2, b"tail-err " + digests[2].hexdigest().encode())
'''


def expected() -> tuple[bytes, bytes]:
    scope: dict[str, object] = {}
    exec(SCRIPT, scope)  # our own constant: the same code the phase runs
    streams = {1: bytearray(), 2: bytearray()}
    for fd, data, _ in scope["steps"]():  # type: ignore[operator]
        streams[fd] += data
    out = bytes(streams[1]) + b"tail-out " + hashlib.sha256(streams[1]).hexdigest().encode()
    err = bytes(streams[2]) + b"tail-err " + hashlib.sha256(streams[2]).hexdigest().encode()
    return out, err


def difference(stored: bytes, wanted: bytes) -> str:
    """Where two byte strings part, for a failure message a person can read."""
    pairs = enumerate(zip(stored, wanted, strict=False))
    at = next((i for i, (a, b) in pairs if a != b), min(len(stored), len(wanted)))
    return (f"stored {len(stored)} bytes, wrote {len(wanted)}; first difference at {at}: "
            f"stored {stored[max(at - 40, 0):at + 60]!r} wrote {wanted[max(at - 40, 0):at + 60]!r}")


def test_split_streams_interleaved_long_partial_and_binary_lines_byte_exact(drainer: Drainer):
    drainer.import_rows([{"run_id": "framing", "phase_id": "mix", "command": py(PHASE), "timeout": 600}])
    done = drainer.drain()
    assert done.returncode == 0, done.stderr
    (attempt,) = all_attempts(drainer)
    assert attempt.failure_class == "succeeded", attempt
    assert attempt.log_mode == "split", attempt
    logs = {p.stream: p for p in attempt.logs}
    want_out, want_err = expected()
    out, err = payload(logs["stdout"]), payload(logs["stderr"])
    problems = [f"{name}: {difference(got, want)}"
                for name, got, want in (("stdout", out, want_out), ("stderr", err, want_err)) if got != want]
    assert not problems, "\n".join(problems)
    for pointer in logs.values():  # the record describes the stored file
        stored = Path(pointer.url).read_bytes()
        assert pointer.size_bytes == len(stored)
        assert pointer.sha256 == hashlib.sha256(stored).hexdigest()
        assert pointer.incomplete is None
