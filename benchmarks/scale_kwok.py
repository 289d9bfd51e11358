"""batchdrain's Kubernetes executor at scale on a real control plane, pods played by kwok.

    sudo bash hack/cluster/up.sh && sudo bash hack/kwok/up.sh      # 100 fake nodes
    KUBECONFIG=/var/lib/batchdrain-cluster/admin.kubeconfig \\
    PYTHONPATH=controller:. python benchmarks/scale_kwok.py --phases 10000 --parallelism 500 \\
        [--job-create-rate 100] [--postgres] [--json out.json]

The real kube-apiserver, etcd, Job controller (kube-controller-manager) and scheduler carry
every Job; kwok (hack/kwok/up.sh) plays the pods on fake nodes (pod-create, pod-ready,
pod-complete and pod-delete stages, ~1-6 s each) and serves every container's log from one
file through the kubelet API. The drain runs on this host as `batchdrain drain --executor
kubernetes` with the admin kubeconfig, a SQLite file (or a throwaway Postgres with
``--postgres``) and a local log store, its Jobs pinned to the fake nodes by nodeSelector and
toleration (the settings ``node_selector`` / ``tolerations``).

Reports: Jobs/s (whole drain, and sustained: between the 10th and 90th percentile of
attempt ends); CPU per Job of batchdrain (the drain process, from wait4) beside the
control plane's (kube-apiserver + kube-controller-manager + kube-scheduler + etcd,
utime+stime from /proc/PID/stat before and after; kwok apart) and the control plane's idle
rate measured just before; the controller's RSS and threads sampled every second; API
requests per Job (apiserver_request_total before/after, by verb and resource: the control
plane's and kwok's own requests for the same pods included); Jobs and pods left; every
attempt's stored logs read back and compared with the file kwok serves.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STATE = Path("/var/lib/batchdrain-cluster")
KWOK_LOG_FILE = STATE / "kwok" / "phase.log"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
NODE_SELECTOR = {"type": "kwok"}
TOLERATIONS = [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
CLK_TCK = os.sysconf("SC_CLK_TCK")
_REQUEST = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
# batchdrain opens every stored log with the attempt's identity, between these lines.
HEADER_START = b"[batchdrain] ===== ENVIRONMENT IDENTITY =====\n"
HEADER_END = b"[batchdrain] ================================\n"


def kubectl() -> str:
    found = shutil.which("kubectl") or next(
        iter(Path("~/.cache/batchdrain").expanduser().glob("k8s-*/bin/kubectl")), None)
    if not found:
        sys.exit("kubectl not found")
    return str(found)


def k(*args: str, check: bool = True) -> str:
    return subprocess.run([kubectl(), *args], capture_output=True, text=True, check=check).stdout


# --- processes -------------------------------------------------------------------

def find_pids(names: tuple[str, ...]) -> dict[str, int]:
    """The pid of each named binary, found by the basename of argv[0]."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
            name = Path(argv0).name
            if name in names:
                found[name] = int(proc.name)
    return found


def cpu_seconds(pid: int) -> float:
    # Fields after the command (which may hold spaces) start at index 2 (state).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


@dataclass
class Sample:
    t: float
    rss_mb: float
    threads: int


class ProcessSampler:
    """RSS and thread count of one process, every ``interval`` seconds, on a thread."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss_kb = int(values.get("VmRSS", "0 kB").split()[0])
            self.samples.append(Sample(round(time.monotonic() - self._t0, 1), rss_kb / 1024,
                                       int(values.get("Threads", "0"))))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- API server ------------------------------------------------------------------

def request_counts() -> Counter[str]:
    """apiserver_request_total summed by "VERB resource[/subresource]"."""
    counts: Counter[str] = Counter()
    for match in _REQUEST.finditer(k("get", "--raw", "/metrics")):
        labels = dict(_LABEL.findall(match.group(1)))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[f"{labels.get('verb', '?')} {resource}"] += int(float(match.group(2)))
    return counts


# Where the control plane waits rather than works: the client-side rate limiter of each
# component's API client (kube-controller-manager: --kube-api-qps 20 by default) and the
# Job controller's work queue. Loopback endpoints, admin client certificate.
COMPONENT_METRICS = {"kube-controller-manager": "https://127.0.0.1:10257/metrics",
                     "kube-scheduler": "https://127.0.0.1:10259/metrics"}
_WAIT_SERIES = re.compile(r'^(rest_client_rate_limiter_duration_seconds_(?:sum|count))\{[^}]*verb="(\w+)"[^}]*\} (\S+)$'
                          r'|^(workqueue_(?:queue|work)_duration_seconds_(?:sum|count))\{name="(job)"\} (\S+)$', re.M)


def component_waits() -> Counter[str]:
    """Seconds (and counts) per component: rate-limiter waits by verb; the job queue's wait and work."""
    waits: Counter[str] = Counter()
    cert = [str(STATE / "pki" / "admin.crt"), str(STATE / "pki" / "admin.key")]
    for component, url in COMPONENT_METRICS.items():
        # The components serve self-signed certificates on loopback.
        text = subprocess.run(["curl", "-sSfk", "--cert", cert[0], "--key", cert[1], url],
                              capture_output=True, text=True, check=True).stdout
        for m in _WAIT_SERIES.finditer(text):
            name, label, value = (m.group(1), m.group(2), m.group(3)) if m.group(1) else m.groups()[3:]
            waits[f"{component} {name} {label}"] += float(value)
    return waits


def wait_summary(delta: Counter[str], jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(delta.items()):
        if key.endswith(("_count GET", "_count POST", "_count PUT", "_count PATCH", "_count DELETE", "_count job")):
            sum_key = key.replace("_count", "_sum")
            out[sum_key.replace("_sum", "")] = {"requests_or_items": int(value),
                                                 "seconds_total": round(delta[sum_key], 1),
                                                 "ms_per_item": round(1000 * delta[sum_key] / max(value, 1), 1),
                                                 "ms_per_job": round(1000 * delta[sum_key] / jobs, 1)}
    return out


def objects_left(namespace: str) -> tuple[int, int]:
    jobs = k("-n", namespace, "get", "jobs", "-o", "name").split()
    pods = k("-n", namespace, "get", "pods", "-o", "name").split()
    return len(jobs), len(pods)


def fake_nodes_ready() -> int:
    out = k("get", "nodes", "-l", "type=kwok", "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}')
    return out.split().count("True")


def create_namespace(namespace: str) -> None:
    k("create", "namespace", namespace)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if k("-n", namespace, "get", "serviceaccount", "default", "-o", "name", check=False).strip():
            return
        time.sleep(0.5)
    sys.exit(f"no default ServiceAccount in {namespace} after 60 s")


# --- logs --------------------------------------------------------------------------

def served_content(path: Path) -> bytes:
    """What a reader of one stream gets from a CRI log file: each record's content."""
    out = bytearray()
    for line in path.read_bytes().splitlines():
        _stamp, _stream, tag, content = line.split(b" ", 3)
        out += content + (b"\n" if tag == b"F" else b"")
    return bytes(out)


def stored_matches(data: bytes, expected: bytes, job_name: str | None) -> bool:
    """The identity header batchdrain writes first (naming this Job), then the served bytes exactly."""
    head, sep, body = data.partition(HEADER_END)
    return bool(sep) and head.startswith(HEADER_START) and f"job: {job_name}\n".encode() in head \
        and body == expected


def read_url(url: str) -> bytes:
    return Path(url.removeprefix("file://")).read_bytes()


@dataclass
class LogCheck:
    attempts: int = 0
    logs: int = 0
    matching: int = 0
    streams: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)


def check_logs(database_url: str, expected: bytes) -> tuple[LogCheck, list[Any]]:
    sys.path.insert(0, str(ROOT / "controller"))
    from batchdrain.db import Database

    db = Database(database_url)
    rows = db.attempts()
    db.dispose()
    check = LogCheck(attempts=len(rows))
    for row in rows:
        for pointer in row.logs:
            check.logs += 1
            check.streams[pointer.stream] += 1
            data = read_url(pointer.url)
            if stored_matches(data, expected, row.job_name) and pointer.size_bytes == len(data) \
                    and pointer.sha256 == hashlib.sha256(data).hexdigest() and pointer.incomplete is None:
                check.matching += 1
            elif len(check.mismatches) < 5:
                check.mismatches.append(f"{row.job_name} {pointer.stream}: {data[:80]!r} ({pointer.incomplete})")
    return check, rows


def sustained_rate(ends: list[float]) -> tuple[float, float, float]:
    """Jobs/s between the 10th and 90th percentile of attempt ends: (rate, from, to)."""
    ends = sorted(ends)
    if len(ends) < 10:
        return 0.0, 0.0, 0.0
    lo, hi = ends[len(ends) // 10], ends[(len(ends) * 9) // 10]
    return ((len(ends) * 8) // 10) / max(hi - lo, 1e-9), lo, hi


# --- the run -----------------------------------------------------------------------

@contextlib.contextmanager
def database(use_postgres: bool, work: Path) -> Iterator[str]:
    if not use_postgres:
        yield f"sqlite:///{work / 'scale.db'}"
        return
    sys.path.insert(0, str(ROOT))
    from tests.pgserver import start_postgres

    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


def drain_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BATCHDRAIN_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "controller"), str(ROOT)])
    env["BATCHDRAIN_NODE_SELECTOR"] = json.dumps(NODE_SELECTOR)
    env["BATCHDRAIN_TOLERATIONS"] = json.dumps(TOLERATIONS)
    return env


def import_backlog(db: str, work: Path, phases: int) -> None:
    rows = [{"run_id": "scale", "phase_id": f"p{i:06d}", "command": ["true"]} for i in range(phases)]
    (work / "backlog.json").write_text(json.dumps(rows))
    subprocess.run([sys.executable, "-m", "batchdrain.cli", "import", str(work / "backlog.json"),
                    "--database-url", db], env=drain_env(), check=True, capture_output=True)


def drain(args: argparse.Namespace, *, db: str, namespace: str, work: Path) -> dict[str, Any]:
    """Run the drain; returns its wall time, CPU (wait4) and RSS samples."""
    command = [sys.executable, "-m", "batchdrain.cli", "drain", "--database-url", db,
               "--executor", "kubernetes", "--namespace", namespace,
               "--parallelism", str(args.parallelism), "--default-image", "kwok.invalid/phase:none",
               "--job-create-rate", str(args.job_create_rate), "--instant-threshold-seconds", "0",
               "--log-store", str(work / "logs"), "--quiet"]
    stderr = (work / "drain.stderr").open("wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(command, env=drain_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    sampler = ProcessSampler(proc.pid, args.sample_seconds)
    profiler = None
    if args.py_spy:
        # Profiling runs are for finding where the time goes, not for the figures: py-spy's
        # own CPU is not the controller's, but it slows the controller it samples.
        profiler = subprocess.Popen([args.py_spy_bin, "record", "--pid", str(proc.pid), "--rate", "50",
                                     "--nonblocking", "--format", "raw", "--output", str(args.py_spy)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    if profiler is not None:
        profiler.wait(timeout=60)
    wall = time.monotonic() - t0
    sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr.close()
    return {"wall": wall, "exit": proc.returncode, "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_mb": usage.ru_maxrss / 1024, "samples": sampler.samples}


def idle_rate(pids: dict[str, int], seconds: float) -> float:
    before = sum(cpu_of(pids).values())
    time.sleep(seconds)
    return (sum(cpu_of(pids).values()) - before) / seconds


def wait_empty(namespace: str, seconds: float) -> tuple[tuple[int, int], tuple[int, int], float]:
    """(left when the drain ended, left at the end, seconds until none were left)."""
    first = objects_left(namespace)
    t0 = time.monotonic()
    left = first
    while left != (0, 0) and time.monotonic() - t0 < seconds:
        time.sleep(2)
        left = objects_left(namespace)
    return first, left, time.monotonic() - t0


def measure(args: argparse.Namespace, db: str, namespace: str, work: Path) -> dict[str, Any]:
    pids = find_pids((*CONTROL_PLANE, "kwok"))
    missing = [name for name in CONTROL_PLANE if name not in pids]
    if missing:
        sys.exit(f"control-plane processes not found: {', '.join(missing)}")
    plane = {name: pids[name] for name in CONTROL_PLANE}
    idle = idle_rate(plane, args.idle_seconds)
    cpu_before, requests_before, waits_before = cpu_of(pids), request_counts(), component_waits()
    run = drain(args, db=db, namespace=namespace, work=work)
    cpu_after, requests_after, waits_after = cpu_of(pids), request_counts(), component_waits()
    waits_after.subtract(waits_before)
    left_at_exit, left, until_empty = wait_empty(namespace, args.leftover_wait)
    requests = requests_after - requests_before
    return {"run": run, "idle_cpu_per_s": idle,
            "cpu": {name: cpu_after[name] - cpu_before[name] for name in pids},
            "requests": dict(requests.most_common()), "requests_total": requests.total(),
            "waits": waits_after,
            "left_at_exit": left_at_exit, "left": left, "seconds_until_empty": until_empty}


def summarise(args: argparse.Namespace, result: dict[str, Any], check: LogCheck, rows: list[Any]) -> dict[str, Any]:
    # Per Job: per attempt (one Job each), not per phase asked for: a session that halts
    # early (a lost API) made fewer Jobs than --phases, and dividing by that flattered it.
    run, n = result["run"], max(len(rows), 1)
    ends = [row.finished_at.timestamp() for row in rows if row.finished_at is not None]
    rate, lo, hi = sustained_rate(ends)
    plane_cpu = sum(result["cpu"][name] for name in CONTROL_PLANE)
    plane_idle = result["idle_cpu_per_s"] * run["wall"]
    succeeded = sum(row.failure_class == "succeeded" for row in rows)
    rss = [s.rss_mb for s in run["samples"]]
    return {
        "phases": args.phases, "parallelism": args.parallelism, "job_create_rate": args.job_create_rate,
        "fake_nodes": result["fake_nodes"], "exit": run["exit"], "wall_s": round(run["wall"], 1),
        "attempts": check.attempts, "succeeded": succeeded,
        "classes": dict(Counter(str(row.failure_class) for row in rows)),
        "jobs_per_s_overall": round(n / run["wall"], 2), "jobs_per_s_sustained": round(rate, 2),
        "sustained_window_s": round(hi - lo, 1),
        "batchdrain_cpu_s": round(run["cpu"], 1), "batchdrain_cpu_ms_per_job": round(1000 * run["cpu"] / n, 2),
        "control_plane_cpu_s": round(plane_cpu, 1),
        "control_plane_cpu_ms_per_job": round(1000 * plane_cpu / n, 2),
        "control_plane_idle_cpu_s_over_wall": round(plane_idle, 1),
        "cpu_s_by_process": {name: round(v, 1) for name, v in result["cpu"].items()},
        "batchdrain_over_control_plane": round(run["cpu"] / plane_cpu, 3) if plane_cpu else None,
        "rss_mb_peak": round(max(rss, default=0.0), 1), "rss_mb_maxrss": round(run["maxrss_mb"], 1),
        "threads_peak": max((s.threads for s in run["samples"]), default=0),
        "rss_mb_over_time": [(s.t, round(s.rss_mb, 1), s.threads) for s in run["samples"][:: max(1, len(rss) // 40)]],
        "api_requests_per_job": round(result["requests_total"] / n, 2),
        "api_requests_per_job_by_verb_resource": {key: round(v / n, 2) for key, v in result["requests"].items()
                                                  if v / n >= 0.05},
        "control_plane_waits": wait_summary(result["waits"], n),
        "jobs_pods_left_at_exit": result["left_at_exit"], "jobs_pods_left": result["left"],
        "seconds_until_none_left": round(result["seconds_until_empty"], 1),
        "logs_stored": check.logs, "logs_matching_served_file": check.matching,
        "log_streams": dict(check.streams), "log_mismatches": check.mismatches,
    }


def print_summary(summary: dict[str, Any]) -> None:
    for key, value in summary.items():
        if key in ("rss_mb_over_time", "api_requests_per_job_by_verb_resource", "control_plane_waits"):
            continue
        print(f"{key:38} {value}")
    print("api requests per job by verb/resource:")
    for key, value in summary["api_requests_per_job_by_verb_resource"].items():
        print(f"    {value:7.2f}  {key}")
    print("control plane waiting (client-side rate limiter by verb; the Job controller's queue):")
    for key, value in summary["control_plane_waits"].items():
        print(f"    {key:70} {value}")
    print("controller RSS over time (s, MB, threads):", summary["rss_mb_over_time"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=50)
    parser.add_argument("--job-create-rate", type=float, default=100.0)
    parser.add_argument("--postgres", action="store_true", help="a throwaway Postgres instead of SQLite")
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--leftover-wait", type=float, default=120.0)
    parser.add_argument("--log-file", type=Path, default=KWOK_LOG_FILE, help="the file kwok serves")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--py-spy", type=Path, help="also profile the drain with py-spy into this file (raw)")
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and namespace")
    args = parser.parse_args()
    nodes = fake_nodes_ready()
    if nodes == 0:
        sys.exit("no Ready kwok nodes (label type=kwok): run hack/kwok/up.sh")
    expected = served_content(args.log_file)
    namespace = f"scale-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="scale-kwok-"))
    create_namespace(namespace)
    try:
        with database(args.postgres, work) as db:
            import_backlog(db, work, args.phases)
            result = measure(args, db, namespace, work)
            result["fake_nodes"] = nodes
            check, rows = check_logs(db, expected)
        summary = summarise(args, result, check, rows)
        summary["database"] = "postgres" if args.postgres else "sqlite"
        summary["drain_stderr_tail"] = (work / "drain.stderr").read_text(errors="replace")[-2000:]
        print_summary(summary)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1, default=str))
    finally:
        if not args.keep:
            k("delete", "namespace", namespace, "--wait=false", check=False)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} and namespace {namespace}")


if __name__ == "__main__":
    main()
