"""Log store throughput: the ``s3://`` sink against the directory sink, side by side.

    bash hack/s3/up.sh            # SeaweedFS on 127.0.0.1:18333; prints the AWS_* exports
    source /tmp/batchdrain-s3-$(id -u)/env
    PYTHONPATH=controller:. python benchmarks/log_store_s3.py --mb 256 --repeats 3

What a log pump does, without a cluster: ``--mb`` MB of 100-byte lines written through
``sink.open(...).write`` in 64 KiB chunks (the pumps' chunk), then ``close()`` (fsync for
the directory; compose, size/ETag check and segment cleanup for S3), and read back once
through ``sink.read`` to check the sha256. Rounds alternate which sink goes first; each
sink's figure is MB written per second of open-to-close, and its peak of bytes held in
memory (S3: the open segment). The S3 server runs on the same 2 cores, so its own CPU is
in the S3 figure: it is the price of an S3-compatible server on the node, an upper bound
on what the sink itself costs. Prints a markdown table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from batchdrain.logstore import CHUNK, FileLogSink, LogSink, S3LogSink


def write_log(sink: LogSink, key: str, mb: int) -> dict[str, Any]:
    line = b"x" * 99 + b"\n"
    chunk = (line * (CHUNK // len(line) + 1))[:CHUNK]
    total = mb * 1_000_000
    digest = hashlib.sha256()
    started = time.monotonic()
    writer = sink.open(key, stream="stdout")
    written = peak = 0
    while written < total:
        piece = chunk[: min(CHUNK, total - written)]
        writer.write(piece)
        digest.update(piece)
        written += len(piece)
        peak = max(peak, len(getattr(writer, "_buffer", b"")))
    pointer = writer.close()
    seconds = time.monotonic() - started
    read_started = time.monotonic()
    back = hashlib.sha256()
    for block in sink.read(pointer.url):
        back.update(block)
    read_seconds = time.monotonic() - read_started
    assert pointer.sha256 == digest.hexdigest() == back.hexdigest(), "stored bytes differ"
    assert pointer.size_bytes == total
    return {"mb_per_s": total / 1e6 / seconds, "seconds": seconds, "read_mb_per_s": total / 1e6 / read_seconds,
            "peak_buffer_bytes": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bucket", default=os.environ.get("BATCHDRAIN_S3_BUCKET", "batchdrain"))
    parser.add_argument("--endpoint", default=os.environ.get("BATCHDRAIN_S3_ENDPOINT", "http://127.0.0.1:18333"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bd-store-bench-"))
    sinks: dict[str, LogSink] = {
        "file": FileLogSink(work / "logs"),
        "s3": S3LogSink(f"s3://{args.bucket}/bench-{os.getpid()}", options={"endpoint_url": args.endpoint}),
    }
    rounds: list[dict[str, Any]] = []
    for r in range(args.repeats):
        order = list(sinks) if r % 2 == 0 else list(reversed(sinks))
        row: dict[str, Any] = {"round": r + 1, "first": order[0]}
        for name in order:
            row[name] = write_log(sinks[name], f"bench/r{r}.stdout.log", args.mb)
            print(f"round {r + 1} {name}: {row[name]['mb_per_s']:.1f} MB/s", file=sys.stderr)
        rounds.append(row)
    print("| round | first | file MB/s | s3 MB/s | s3 / file | s3 read back MB/s | s3 peak buffer MiB |")
    print("|---|---|---|---|---|---|---|")
    for row in rounds:
        print(f"| {row['round']} | {row['first']} | {row['file']['mb_per_s']:.1f} | {row['s3']['mb_per_s']:.1f} | "
              f"{row['s3']['mb_per_s'] / row['file']['mb_per_s']:.2f} | {row['s3']['read_mb_per_s']:.1f} | "
              f"{row['s3']['peak_buffer_bytes'] / 2**20:.1f} |")
    ratio = statistics.median(r["s3"]["mb_per_s"] / r["file"]["mb_per_s"] for r in rounds)
    print(f"\nmedian s3/file ratio: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"mb": args.mb, "rounds": rounds, "median_ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
