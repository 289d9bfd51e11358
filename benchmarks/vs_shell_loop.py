"""batchdrain against the shell loop a platform engineer would write, side by side.

    KUBECONFIG=... python benchmarks/vs_shell_loop.py --phases 100 --parallelism 10 --pairs 3

Same cluster, same image, same trivial phase, alternating runs (B, L, L, B, B, L...):
  batchdrain: `batchdrain drain --executor kubernetes --parallelism P` on a SQLite backlog.
  loop:       `xargs -P P` over `kubectl create job` + `kubectl wait --for=condition=complete`
              + `kubectl logs job/... > file` (records nothing durable beyond the log files;
              no exit codes, no classes, no retries, no identity).
Reports wall time and the ratio, API requests per phase (apiserver_request_total, which
also counts the control plane's own requests for the same pods: the floor both share), and
the cluster's floor: sum over phases of (Job created -> container finished) / P, so
controller overhead = wall / floor - 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import urllib3
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
PHASE = ["python3", "-c", "print('phase done')"]


def kubectl() -> str:
    found = shutil.which("kubectl") or next(iter(Path("~/.cache/batchdrain").expanduser().glob("k8s-*/bin/kubectl")),
                                            None)
    if not found:
        sys.exit("kubectl not found")
    return str(found)


def api_requests() -> int:
    text = subprocess.run([kubectl(), "get", "--raw", "/metrics"], capture_output=True, text=True, check=True).stdout
    return sum(int(float(m.group(1))) for m in re.finditer(r"^apiserver_request_total\{[^}]*\} (\S+)$", text, re.M))


def loop_floor(core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str, parallelism: int) -> float:
    """Sum over phases of (Job created -> container finished) / parallelism: the ideal drain time."""
    created = {j.metadata.name: j.metadata.creation_timestamp for j in batch.list_namespaced_job(namespace).items}
    total = 0.0
    for pod in core.list_namespaced_pod(namespace).items:
        job = (pod.metadata.labels or {}).get("job-name")
        statuses = pod.status.container_statuses or []
        ends = [s.state.terminated.finished_at for s in statuses if s.state and s.state.terminated]
        if ends and job in created:
            total += (max(ends) - created[job]).total_seconds()
    return total / parallelism


class Sightings:
    """When this process first saw each Job created and its pod's container terminated.

    Both ends come from the same watch connection and the same clock, with sub-second
    resolution (the API's timestamps have whole seconds), the same way for both tools:
    the "visible floor" is what a perfect controller, reacting instantly to what the
    apiserver shows, would need: sum of (Job seen -> termination seen) / P.
    """

    def __init__(self, namespace: str) -> None:
        self.created: dict[str, float] = {}
        self.terminated: dict[str, float] = {}
        self._watches = [watch.Watch(), watch.Watch()]
        self._threads = [
            threading.Thread(target=self._jobs, args=(namespace,), daemon=True),
            threading.Thread(target=self._pods, args=(namespace,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _jobs(self, namespace: str) -> None:
        with contextlib.suppress(urllib3.exceptions.ProtocolError):  # the namespace is deleted after the run
            for event in self._watches[0].stream(client.BatchV1Api().list_namespaced_job, namespace):
                self.created.setdefault(event["object"].metadata.name, time.time())

    def _pods(self, namespace: str) -> None:
        with contextlib.suppress(urllib3.exceptions.ProtocolError):
            self._pods_until_cut(namespace)

    def _pods_until_cut(self, namespace: str) -> None:
        for event in self._watches[1].stream(client.CoreV1Api().list_namespaced_pod, namespace):
            pod = event["object"]
            job = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name")
            done = any(s.state and s.state.terminated for s in pod.status.container_statuses or [])
            if job and done:
                self.terminated.setdefault(job, time.time())

    def stop(self) -> None:
        for w in self._watches:
            w.stop()

    def floor(self, parallelism: int) -> float:
        spans = [self.terminated[j] - t for j, t in self.created.items() if j in self.terminated]
        return sum(spans) / parallelism


def run_batchdrain(namespace: str, n: int, p: int, image: str, work: Path) -> float:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")},
           "PYTHONPATH": str(ROOT / "controller")}
    db = f"sqlite:///{work / 'bench.db'}"
    rows = [{"run_id": "bench", "phase_id": f"p{i:04d}", "command": PHASE} for i in range(n)]
    (work / "backlog.yaml").write_text(json.dumps(rows))  # JSON is YAML
    subprocess.run([sys.executable, "-m", "batchdrain.cli", "import", str(work / "backlog.yaml"),
                    "--database-url", db], env=env, check=True, capture_output=True)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "batchdrain.cli", "drain", "--database-url", db, "--executor", "kubernetes",
                    "--namespace", namespace, "--parallelism", str(p), "--default-image", image,
                    "--image-pull-policy", "IfNotPresent", "--instant-threshold-seconds", "0",
                    "--log-store", str(work / "logs"), "--quiet"], env=env, check=True, capture_output=True)
    return time.monotonic() - t0


def run_loop(namespace: str, n: int, p: int, image: str, work: Path) -> float:
    (work / "loop-logs").mkdir()
    script = (f'k={kubectl()}; ns={namespace}; j=loop-$1; '
              f'$k -n $ns create job $j --image={image} -- {" ".join(PHASE[:2])} "{PHASE[2]}" >/dev/null && '
              '$k -n $ns wait --for=condition=complete --timeout=600s job/$j >/dev/null && '
              f'$k -n $ns logs job/$j > {work}/loop-logs/$j.log')
    t0 = time.monotonic()
    seq = subprocess.Popen(["seq", "1", str(n)], stdout=subprocess.PIPE)
    subprocess.run(["xargs", "-P", str(p), "-I{}", "sh", "-c", script, "_", "{}"], stdin=seq.stdout, check=True)
    seq.wait()
    return time.monotonic() - t0


def fresh_namespace(core: client.CoreV1Api, namespace: str) -> None:
    """Create the namespace and wait (up to 60 s) for its default ServiceAccount: pods need it."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(namespace).items):
            break
        time.sleep(0.2)


def one(kind: str, core: client.CoreV1Api, *, batch: client.BatchV1Api, n: int, p: int, image: str) -> dict:
    namespace = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    fresh_namespace(core, namespace)
    work = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    sightings = Sightings(namespace)
    time.sleep(1)  # both watches established before the first Job
    before = api_requests()
    wall = (run_batchdrain if kind == "batchdrain" else run_loop)(namespace, n, p, image, work)
    after = api_requests()
    sightings.stop()
    if kind == "batchdrain":
        sys.path.insert(0, str(ROOT / "controller"))
        from batchdrain.db import Database

        db = Database(f"sqlite:///{work / 'bench.db'}")
        rows = db.attempts()
        db.dispose()
        # the same span as the loop's: attempt opened (just before the Job is created)
        # to container finished; batchdrain has deleted its Jobs, its rows keep the times
        floor = sum((r.finished_at - r.created_at).total_seconds() for r in rows) / p
        ok = sum(r.failure_class == "succeeded" for r in rows)
    else:
        floor = loop_floor(core, batch, namespace, p)
        ok = sum(1 for j in batch.list_namespaced_job(namespace).items if j.status.succeeded)
    core.delete_namespace(namespace)
    shutil.rmtree(work, ignore_errors=True)
    return {"kind": kind, "wall": wall, "requests_per_phase": (after - before) / n, "floor": floor, "ok": ok,
            "visible_floor": sightings.floor(p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--image", default=os.environ.get("BATCHDRAIN_E2E_IMAGE", "batchdrain:dev"))
    args = parser.parse_args()
    config.load_kube_config()
    core, batch = client.CoreV1Api(), client.BatchV1Api()
    order = []
    for i in range(args.pairs):
        order += ["batchdrain", "loop"] if i % 2 == 0 else ["loop", "batchdrain"]
    results = []
    for kind in order:
        result = one(kind, core, batch=batch, n=args.phases, p=args.parallelism, image=args.image)
        results.append(result)
        print(f"{dt.datetime.now():%H:%M:%S} {kind}: wall {result['wall']:.1f}s, {result['ok']}/{args.phases} ok, "
              f"{result['requests_per_phase']:.1f} API requests/phase, floor {result['floor']:.1f}s, "
              f"visible floor {result['visible_floor']:.1f}s",
              file=sys.stderr)
    print("| run | wall (s) | succeeded | API requests / phase | floor (s) | wall / floor - 1 "
          "| visible floor (s) | wall / visible floor - 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['wall']:.1f} | {r['ok']}/{args.phases} | {r['requests_per_phase']:.1f} | "
              f"{r['floor']:.1f} | {100 * (r['wall'] / r['floor'] - 1):.0f}% | {r['visible_floor']:.1f} | "
              f"{100 * (r['wall'] / r['visible_floor'] - 1):.0f}% |")
    bd = statistics.median(r["wall"] for r in results if r["kind"] == "batchdrain")
    loop = statistics.median(r["wall"] for r in results if r["kind"] == "loop")
    print(f"\nmedian wall: batchdrain {bd:.1f}s, loop {loop:.1f}s, ratio batchdrain/loop = {bd / loop:.2f}")


if __name__ == "__main__":
    main()
