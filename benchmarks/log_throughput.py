"""Log throughput: batchdrain's log path against `kubectl logs -f > file`, on the same pod.

    KUBECONFIG=... python benchmarks/log_throughput.py --mb 50 --repeats 3

A phase prints ``--mb`` MB of 100-byte lines as fast as it can, then a sentinel line,
then sleeps (so the pod stays up for both readers). batchdrain drains it with the
Kubernetes executor (streams followed from the apiserver into the file LogSink, with
timestamps for resumption, split stdout/stderr where the cluster supports it); at the
moment the pod is seen running, ``kubectl logs -f`` starts reading the same container
into a file. Each reader's time runs from when the container was seen running to when
its file holds the sentinel. Both read at once, as a user watching a drain would, so
they share the node's CPU and the container runtime's log file: the ratio is what
matters, not the absolute MB/s.

To find where a gap comes from, ``--compare`` runs pairs of readers instead, alternating
rounds on the same cluster (round r runs every pair, starting at a different one each time):

    KUBECONFIG=... python benchmarks/log_throughput.py --mb 50 --repeats 3 \
        --compare bd-split:kubectl bd-combined:kubectl kubectl-ts:kubectl kubectl:kubectl

Readers: ``bd-split`` (batchdrain as shipped on this cluster: one follow per stream),
``bd-s3`` (the same, its logs into ``--log-store-s3 s3://bucket/prefix`` with
``--log-store-option`` values: against ``bd-split``'s ratio to kubectl, the S3 sink
against the file sink on the same kind of pod),
``bd-combined`` (batchdrain with the combined log mode forced: one follow),
``bd-combined-nots`` (that, also without timestamps: a diagnosis, not a configuration
batchdrain offers, as resumption needs the timestamps), ``kubectl``
(``kubectl logs -f``), ``kubectl-ts`` (``kubectl logs -f --timestamps``). A pair holds at
most one batchdrain reader; a pair of kubectl readers still runs its pod through
``batchdrain drain`` (same Job, same pod spec) with batchdrain's log pumps switched off,
so nothing else reads the pod. The log mode is forced and the pumps switched off by
patching the executor in the drain process (``DRAIN_SHIM``): the product has no flag for
either. Each round also notes when the container runtime's log file on the node
(/var/log/pods, readable when the benchmark runs on the node) holds the sentinel: the
writer's own pace, so each reader's lag behind it is known. MB/s counts content bytes
(``--mb``), for every reader, also those reading timestamps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from kubernetes import client, config
from vs_shell_loop import kubectl  # benchmarks/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = b"LOG-END\n"
READERS = ("bd-split", "bd-s3", "bd-combined", "bd-combined-nots", "kubectl", "kubectl-ts")
# --log-store-s3 URL with its --log-store-option values: where ``bd-s3`` stores its logs.
S3_STORE: dict[str, object] = {}
# The drain, with the executor patched for --compare: ``combined`` forces one follow per
# pod (the mode batchdrain uses where the cluster has no split streams); ``combined-nots``
# also asks for no timestamps (diagnosis only: without them a dropped follow cannot resume
# without gaps or repeats, so no product configuration does this); ``none`` makes every
# log pump return at once (the pod runs exactly as usual, nothing of ours reads it).
DRAIN_SHIM = """
import sys
from batchdrain.domain import LogMode
from batchdrain.executors import kubernetes
mode = sys.argv.pop(1)
if mode.startswith("combined"):
    kubernetes.KubernetesExecutor._detect_log_mode = lambda self: (LogMode.COMBINED, "log_throughput.py")
if mode == "combined-nots":
    class NoTimestamps:
        def __init__(self, api):
            self.api = api
        def stream_pod_log(self, name, **query):
            return self.api.stream_pod_log(name, **{**query, "timestamps": False})
    pump_init = kubernetes._LogPump.__init__
    def init(self, api, **kwargs):
        pump_init(self, NoTimestamps(api), **kwargs)
    kubernetes._LogPump.__init__ = init
if mode == "none":
    kubernetes._LogPump.run = lambda self: None
from batchdrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def phase_command(mb: int) -> list[str]:
    code = ("import sys, time\n"
            "line = b'x' * 99 + b'\\n'\n"
            "block = line * 10000\n"  # ~1 MB per write
            f"for _ in range({mb}):\n"
            "    sys.stdout.buffer.write(block)\n"
            "sys.stdout.buffer.write(b'LOG-END\\n'); sys.stdout.flush()\n"
            "time.sleep(60)\n")
    return ["python3", "-c", code]


def ends_with_sentinel(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size < len(SENTINEL):
                return False
            f.seek(size - len(SENTINEL))
            return f.read() == SENTINEL
    except FileNotFoundError:
        return False


def pair_arg(text: str) -> tuple[str, str]:
    first, _, second = text.partition(":")
    if first not in READERS or second not in READERS:
        raise argparse.ArgumentTypeError(f"{text!r}: want A:B with A and B among {', '.join(READERS)}")
    if first.startswith("bd-") and second.startswith("bd-"):
        raise argparse.ArgumentTypeError(f"{text!r}: at most one batchdrain reader per pair (one drain)")
    return first, second


def pair_names(pair: tuple[str, str]) -> tuple[str, str]:
    return pair if pair[0] != pair[1] else (pair[0], f"{pair[1]}#2")


def fixed(path: Path) -> Callable[[], Path | None]:
    return lambda: path


def start_drain(work: Path, env: dict[str, str], *, kubeconfig: str, namespace: str, image: str, mb: int,
                pair: tuple[str, str]) -> subprocess.Popen[bytes]:
    """Enqueue the phase and start ``batchdrain drain`` on it, shimmed for the pair's batchdrain reader."""
    db = f"sqlite:///{work / 'backlog.db'}"
    cli = [sys.executable, "-m", "batchdrain.cli"]
    subprocess.run([*cli, "enqueue", "--database-url", db, "--run-id", "logs", "--phase-id", "burst", "--",
                    *phase_command(mb)], env=env, check=True, capture_output=True)
    mode = next((reader.removeprefix("bd-") for reader in pair if reader.startswith("bd-")), "none")
    launcher = cli if mode in ("split", "s3") else [sys.executable, "-c", DRAIN_SHIM, mode]
    store = ["--log-store", str(work / "logs")]
    if mode == "s3":  # batchdrain as shipped, its logs into S3: the same pod, another sink
        store = ["--log-store", f"{S3_STORE['url']}/{work.name}"]
        store += [arg for option in S3_STORE["options"] for arg in ("--log-store-option", str(option))]
    return subprocess.Popen(
        [*launcher, "drain", "--database-url", db, "--executor", "kubernetes", "--kubeconfig", kubeconfig,
         "--namespace", namespace, "--default-image", image, "--image-pull-policy", "IfNotPresent",
         *store, "--quiet", "--default-timeout-seconds", "600"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def running_pod(core: client.CoreV1Api, namespace: str) -> str:
    """The name of the drain's pod, once its container runs."""
    pod = None
    while pod is None:
        selector = "app.kubernetes.io/managed-by=batchdrain"
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items:
            states = [s.state.running for s in (p.status.container_statuses or [])]
            if p.status.phase == "Running" and any(states) and not p.metadata.deletion_timestamp:
                pod = p.metadata.name
        time.sleep(0.02)
    return pod


class S3Tail:
    """``bd-s3``'s stored stdout log, read from the bucket: ``path`` stands in for a file."""

    def __init__(self, work: Path) -> None:
        from batchdrain.logstore import S3LogSink

        options = dict(str(o).split("=", 1) for o in S3_STORE["options"])
        self.sink = S3LogSink(f"{S3_STORE['url']}/{work.name}", options=options)
        self.next_look = 0.0

    def done(self) -> bool:
        # Every 0.2 s, not every 10 ms: a LIST and a GET a look would load the server we measure.
        if time.monotonic() < self.next_look:
            return False
        self.next_look = time.monotonic() + 0.2
        page = self.sink.client.call("list_objects_v2", "bench", Bucket=self.sink.bucket, Prefix=self.sink.prefix)
        keys = {o["Key"].split(".parts/")[0] for o in page.get("Contents") or []}
        log = next((k for k in keys if k.endswith(".stdout.log") or k.endswith(".attempt-1.log")), None)
        if log is None:
            return False
        tail = self.sink.tail(f"s3://{self.sink.bucket}/{log}", len(SENTINEL))
        return tail == SENTINEL


def stored_log(work: Path) -> Callable[[], Path | None]:
    """batchdrain's own log file of the attempt, once the log store has created it."""
    def ours() -> Path | None:
        found = list((work / "logs").rglob("*.stdout.log")) + list((work / "logs").rglob("*.attempt-1.log"))
        return found[0] if found else None
    return ours


def start_readers(pair: tuple[str, str], names: tuple[str, str], *, work: Path, kubeconfig: str, namespace: str,
                  pod: str, followers: list[subprocess.Popen[bytes]],
                  outs: list[BinaryIO]) -> list[tuple[str, Callable[[], Path | None]]]:
    """Start the pair's kubectl followers (into ``followers`` and ``outs``); each reader's file, by name."""
    watched: list[tuple[str, Callable[[], Path | None]]] = []
    for reader, name in zip(pair, names, strict=True):  # each: a file finder, or (bd-s3) a done check
        if reader == "bd-s3":
            watched.append((name, S3Tail(work).done))
            continue
        if reader.startswith("bd-"):
            watched.append((name, stored_log(work)))
            continue
        path = work / f"{name}.log"
        outs.append(out := path.open("wb"))
        flags = ["--timestamps"] if reader == "kubectl-ts" else []
        followers.append(subprocess.Popen([kubectl(), "--kubeconfig", kubeconfig, "-n", namespace, "logs", "-f",
                                           *flags, pod, "-c", "phase"], stdout=out, stderr=subprocess.DEVNULL))
        watched.append((name, fixed(path)))
    return watched


def time_to_sentinel(watched: list[tuple[str, Callable[[], Path | None]]], since: float, *,
                     timeout: float = 600) -> dict[str, float]:
    """Seconds from ``since`` until each file ends with the sentinel; those that did within ``timeout``."""
    done: dict[str, float] = {}
    paths: dict[str, Path] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(watched) and time.monotonic() < deadline:
        for name, find in watched:
            if name in done:
                continue
            if isinstance(getattr(find, "__self__", None), S3Tail):
                if find():
                    done[name] = time.monotonic() - since
                continue
            located = paths.get(name) or find()
            if located is None:
                continue
            paths[name] = located
            if ends_with_sentinel(located):
                done[name] = time.monotonic() - since
        time.sleep(0.01)
    return done


def one_round(core: client.CoreV1Api, namespace: str, kubeconfig: str, image: str, mb: int, *,
              pair: tuple[str, str] = ("bd-split", "kubectl"), names: tuple[str, str] = ("batchdrain", "kubectl"),
              node_file: bool = False) -> dict[str, float]:
    """One pod, two readers: MB/s and seconds per reader name (and ``written``, with ``node_file``)."""
    work = Path(tempfile.mkdtemp(prefix="bd-logbench-"))
    path = os.pathsep.join(p for p in (str(ROOT / "controller"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")}, "PYTHONPATH": path}
    drain = start_drain(work, env, kubeconfig=kubeconfig, namespace=namespace, image=image, mb=mb, pair=pair)
    followers: list[subprocess.Popen[bytes]] = []
    outs: list[BinaryIO] = []
    try:
        pod = running_pod(core, namespace)
        seen_running = time.monotonic()
        watched = start_readers(pair, names, work=work, kubeconfig=kubeconfig, namespace=namespace, pod=pod,
                                followers=followers, outs=outs)
        # The container runtime's own log file, when this runs on the node: the writer's pace.
        runtime_log = next(Path("/var/log/pods").glob(f"{namespace}_{pod}_*/phase/*.log"), None) if node_file else None
        if runtime_log is not None:
            watched.append(("written", fixed(runtime_log)))
        done = time_to_sentinel(watched, seen_running)
        for follower in followers:
            follower.kill()
            follower.wait()
        for out in outs:
            out.close()
        # Let the drain finish the attempt properly: delete the pod's Job via its own path
        # by deleting the pod (class pod_deleted), then wait for the session to end.
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
        drain.wait(timeout=300)
    finally:
        for follower in followers:
            follower.kill()
        drain.kill()
        if drain.stderr:
            drain.stderr.close()
    if len(done) < len(watched):
        sys.exit(f"a reader did not finish: {done}")
    bytes_out = mb * 10000 * 100
    shutil.rmtree(work, ignore_errors=True)
    return {name: bytes_out / 1e6 / seconds for name, seconds in done.items()} | {
        f"{name}_seconds": seconds for name, seconds in done.items()}


def compare(core: client.CoreV1Api, namespace: str, kubeconfig: str, image: str, mb: int, *, repeats: int,
            pairs: list[tuple[str, str]]) -> None:
    """Every pair once per round, each round starting at the next pair; a JSON line per round, then per pair."""
    rounds: dict[tuple[str, str], list[dict[str, float]]] = {pair: [] for pair in pairs}
    for index in range(repeats):
        for pair in pairs[index % len(pairs):] + pairs[:index % len(pairs)]:
            load, started = os.getloadavg()[0], time.strftime("%H:%M:%S")
            result = one_round(core, namespace, kubeconfig, image, mb, pair=pair, names=pair_names(pair),
                               node_file=True)
            rounds[pair].append(result)
            print(json.dumps({"round": index + 1, "pair": ":".join(pair), "started": started,
                              "load1_before": round(load, 2)}
                             | {k: round(v, 2) for k, v in result.items()}), flush=True)
    for pair, results in rounds.items():
        first, second = pair_names(pair)
        a = statistics.median(r[first] for r in results)
        b = statistics.median(r[second] for r in results)
        summary: dict[str, object] = {
            "pair": ":".join(pair), "mb": mb, "repeats": repeats,
            f"{first}_mb_s_median": round(a, 2), f"{second}_mb_s_median": round(b, 2),
            "ratio_median": round(statistics.median(r[first] / r[second] for r in results), 3),
            "ratio_of_medians": round(a / b, 3)}
        if all("written" in r for r in results):
            summary["written_mb_s_median"] = round(statistics.median(r["written"] for r in results), 2)
            for name in (first, second):
                lags = [r[f"{name}_seconds"] - r["written_seconds"] for r in results]
                summary[f"{name}_lag_s_median"] = round(statistics.median(lags), 2)
        print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", default="batchdrain:dev")
    parser.add_argument("--log-store-s3", metavar="s3://BUCKET/PREFIX", help="where bd-s3 stores its logs")
    parser.add_argument("--log-store-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of that store (repeatable), e.g. endpoint_url=http://127.0.0.1:18333")
    parser.add_argument("--compare", nargs="+", type=pair_arg, metavar="A:B",
                        help=f"pairs of readers, rounds alternating between them; readers: {', '.join(READERS)}")
    args = parser.parse_args()
    if args.compare and len(set(args.compare)) < len(args.compare):
        parser.error("--compare: a pair given twice")
    if any("bd-s3" in pair for pair in args.compare or []) and not args.log_store_s3:
        parser.error("bd-s3 needs --log-store-s3")
    S3_STORE.update(url=args.log_store_s3, options=args.log_store_option)
    kubeconfig = os.environ.get("KUBECONFIG") or sys.exit("set KUBECONFIG")
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    namespace = f"bd-logbench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        while not core.list_namespaced_service_account(namespace).items:
            time.sleep(0.2)
        if args.compare:
            compare(core, namespace, kubeconfig, args.image, args.mb, repeats=args.repeats, pairs=args.compare)
            return
        rounds = [one_round(core, namespace, kubeconfig, args.image, args.mb) for _ in range(args.repeats)]
    finally:
        core.delete_namespace(namespace)
    for r in rounds:
        print(json.dumps({k: round(v, 2) for k, v in r.items()}))
    bd = statistics.median(r["batchdrain"] for r in rounds)
    kc = statistics.median(r["kubectl"] for r in rounds)
    print(json.dumps({"mb": args.mb, "repeats": args.repeats, "batchdrain_mb_s_median": round(bd, 2),
                      "kubectl_mb_s_median": round(kc, 2), "ratio": round(bd / kc, 2)}))


if __name__ == "__main__":
    main()
