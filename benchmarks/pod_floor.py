"""Where a pod's time goes while batchdrain, the shell loop, or an ideal controller runs it.

    KUBECONFIG=... python benchmarks/pod_floor.py --phases 100 --parallelism 10 --rounds 3 \
        --kinds loop,ideal,batchdrain

The same measure as ``vs_shell_loop.py``'s "visible floor" (sum over phases of Job seen
-> terminated container seen, by a watch in this process, / P), plus where each pod's
span goes, from this process's watch and containerd's log (sub-second, same host clock):

  job->pod      Job seen -> its pod seen (Job controller)
  pod->sandbox  pod seen -> containerd's RunPodSandbox (scheduler, kubelet admission, volumes)
  sandbox       RunPodSandbox -> it returned (network namespace, CNI)
  ->started     sandbox returned -> StartContainer returned (create + start)
  run           StartContainer returned -> the shim disconnected (the process ran and exited)
  exit->seen    shim disconnected -> terminated container seen (PLEG relist, status sync, watch)

and ``in flight``: the mean number of pods inside their Job-seen -> terminated-seen span
over the run (sum of spans / wall): the node's load in concurrent pods.

Kinds, in rotation each round, each in its own namespace:
  loop        vs_shell_loop's ``xargs -P`` over kubectl create/wait/logs
  ideal       an in-process controller keeping P Jobs in flight, reacting to the watch at
              once (one log read, Job deleted in the background); the pod of
              ``kubectl create job``
  ideal-keep  the same, Jobs and pods left until the namespace goes (like the loop)
  ideal-bd    the same as ideal with batchdrain's pod spec (security context, /tmp emptyDir,
              no service account token, logs finalizer removed after the log read)
  batchdrain  ``batchdrain drain`` as vs_shell_loop runs it
  batchdrain:ENV[+ENV]  the same with environment variables set (ENV=1 each): the
              experiment switches BDX_NOFOLLOW (no live follow, final reads only),
              BDX_COMBINED (one combined log), BDX_NOEVENTS (no Events), BDX_PLAINSPEC
              (the pod of ``kubectl create job``) exist only in commit e6cd3a9 of branch
              i15-pods (none of them helped, see RESULTS.md "Why batchdrain's own pods ...")
  nice:KIND   KIND's controller process at nice 19
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import queue
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
from typing import Any

import urllib3
from kubernetes import client, config, watch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_shell_loop as vs

CONTAINERD_LOG = Path("/var/lib/batchdrain-cluster/logs/containerd.log")
STAGES = ("job->pod", "pod->sandbox", "sandbox", "->started", "run", "exit->seen")


class Timeline:
    """Per Job: when this process saw it, its pod, and its container terminated."""

    def __init__(self, namespace: str) -> None:
        self.job_seen: dict[str, float] = {}
        self.pod_seen: dict[str, float] = {}
        self.pod_of: dict[str, str] = {}
        self.terminated: dict[str, float] = {}
        self.cond = threading.Condition()
        self._watches = [watch.Watch(), watch.Watch()]
        for target in (self._jobs, self._pods):
            threading.Thread(target=target, args=(namespace,), daemon=True).start()

    def _jobs(self, namespace: str) -> None:
        with contextlib.suppress(urllib3.exceptions.ProtocolError):
            for event in self._watches[0].stream(client.BatchV1Api().list_namespaced_job, namespace):
                self.job_seen.setdefault(event["object"].metadata.name, time.time())

    def _pods(self, namespace: str) -> None:
        with contextlib.suppress(urllib3.exceptions.ProtocolError):
            for event in self._watches[1].stream(client.CoreV1Api().list_namespaced_pod, namespace):
                pod = event["object"]
                job = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name")
                if not job:
                    continue
                now = time.time()
                self.pod_seen.setdefault(job, now)
                self.pod_of.setdefault(job, pod.metadata.name)
                if any(s.state and s.state.terminated for s in pod.status.container_statuses or []):
                    with self.cond:
                        self.terminated.setdefault(job, now)
                        self.cond.notify_all()

    def wait_terminated(self, job: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: job in self.terminated, timeout)

    def stop(self) -> None:
        for w in self._watches:
            w.stop()

    def spans(self) -> list[float]:
        return [self.terminated[j] - t for j, t in self.job_seen.items() if j in self.terminated]


_TS = re.compile(r'^time="([^"]+)"')
_SANDBOX = re.compile(r'RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),[^}]*Namespace:([^,]+),')
_SANDBOX_ID = re.compile(r'returns sandbox id \\"([0-9a-f]+)\\"')
_CREATED = re.compile(r'CreateContainer within sandbox \\"([0-9a-f]+)\\".*returns container id \\"([0-9a-f]+)\\"')
_STARTED = re.compile(r'StartContainer for \\"([0-9a-f]+)\\" returns successfully')
_SHIM_GONE = re.compile(r'msg="shim disconnected" id=([0-9a-f]+)')


def _stamp(line: str) -> float | None:
    m = _TS.match(line)
    if not m:
        return None
    text = m.group(1).rstrip("Z")
    head, _, frac = text.partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def containerd_times(offset: int, namespace: str) -> dict[str, dict[str, float]]:
    """Per pod name: sandbox asked / returned, container started, shim gone (containerd's clock)."""
    out: dict[str, dict[str, float]] = {}
    pod_of_sandbox: dict[str, str] = {}
    pod_of_container: dict[str, str] = {}
    with CONTAINERD_LOG.open("rb") as f:
        f.seek(offset)
        for raw in f:
            line = raw.decode("utf-8", "replace")
            m = _SANDBOX.search(line)
            if m and m.group(2) == namespace:
                t = _stamp(line)
                rec = out.setdefault(m.group(1), {})
                s = _SANDBOX_ID.search(line)
                if s:
                    rec["sandbox_done"] = t or 0.0
                    pod_of_sandbox[s.group(1)] = m.group(1)
                else:
                    rec.setdefault("sandbox_asked", t or 0.0)
                continue
            m = _CREATED.search(line)
            if m and m.group(1) in pod_of_sandbox:
                pod_of_container[m.group(2)] = pod_of_sandbox[m.group(1)]
                continue
            m = _STARTED.search(line)
            if m and m.group(1) in pod_of_container:
                out[pod_of_container[m.group(1)]]["started"] = _stamp(line) or 0.0
                continue
            m = _SHIM_GONE.search(line)
            if m and m.group(1) in pod_of_container:
                out[pod_of_container[m.group(1)]].setdefault("exited", _stamp(line) or 0.0)
    return out


def stages(tl: Timeline, ctr: dict[str, dict[str, float]]) -> dict[str, float]:
    """Median of each stage over the run's pods, in seconds."""
    per: dict[str, list[float]] = {s: [] for s in STAGES}
    for job, seen in tl.job_seen.items():
        pod = tl.pod_of.get(job)
        rec = ctr.get(pod or "")
        needed = {"sandbox_asked", "sandbox_done", "started", "exited"}
        if job not in tl.terminated or not rec or not needed <= set(rec):
            continue
        points = [seen, tl.pod_seen[job], rec["sandbox_asked"], rec["sandbox_done"], rec["started"], rec["exited"],
                  tl.terminated[job]]
        for name, a, b in zip(STAGES, points, points[1:], strict=False):
            per[name].append(b - a)
    return {s: statistics.median(v) if v else float("nan") for s, v in per.items()}


# -- the ideal controller ----------------------------------------------------------------

def _ideal_job(name: str, image: str, bd_spec: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image, "command": vs.PHASE, "imagePullPolicy": "IfNotPresent"}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    meta: dict[str, Any] = {}
    if bd_spec:  # what jobspec.JobSpecBuilder adds (the phase itself is the same)
        container.update({
            "name": "phase", "env": [{"name": "HOME", "value": "/tmp"}],
            "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            "terminationMessagePolicy": "FallbackToLogsOnError"})
        pod_spec.update({
            "terminationGracePeriodSeconds": 30, "volumes": [{"name": "tmp", "emptyDir": {}}],
            "enableServiceLinks": False, "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}}})
        meta["finalizers"] = ["batchdrain.io/logs"]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"metadata": meta, "spec": pod_spec}}}


def run_ideal(namespace: str, n: int, p: int, image: str, tl: Timeline, *, bd_spec: bool,
              keep: bool = False) -> float:
    core, batch = client.CoreV1Api(), client.BatchV1Api()
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(n):
        todo.put(i)

    def worker() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            name = f"ideal-{i:04d}"
            batch.create_namespaced_job(namespace, _ideal_job(name, image, bd_spec))
            if not tl.wait_terminated(name, 300):
                raise RuntimeError(f"{name} never terminated")
            pod = tl.pod_of[name]
            core.read_namespaced_pod_log(pod, namespace)
            if keep:
                continue
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
            if bd_spec:
                core.patch_namespaced_pod(pod, namespace, {"metadata": {"finalizers": None}})

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(p)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


# -- one run -----------------------------------------------------------------------------

def _with_env(kind: str) -> tuple[str, dict[str, str], bool]:
    nice = kind.startswith("nice:")
    base, _, flags = kind.removeprefix("nice:").partition(":")
    env = {f: "1" for f in flags.split("+") if f}
    return base, env, nice


def one(kind: str, *, n: int, p: int, image: str) -> dict[str, Any]:
    core = client.CoreV1Api()
    base, env, nice = _with_env(kind)
    namespace = f"pf-{base[:10]}-{uuid.uuid4().hex[:6]}"
    vs.fresh_namespace(core, namespace)
    work = Path(tempfile.mkdtemp(prefix="pod-floor-"))
    offset = CONTAINERD_LOG.stat().st_size
    tl = Timeline(namespace)
    time.sleep(1)
    saved = dict(os.environ)
    os.environ.update(env)
    t_start = time.time()
    try:
        if base == "loop":
            wall = vs.run_loop(namespace, n, p, image, work)
        elif base.startswith("ideal"):
            wall = run_ideal(namespace, n, p, image, tl, bd_spec=base == "ideal-bd", keep=base == "ideal-keep")
        else:
            wall, t_start = _run_batchdrain(namespace, n, p, image, work, nice=nice)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    t_end = t_start + wall
    time.sleep(2)  # the last terminations reach the watch
    tl.stop()
    spans = tl.spans()
    head = min(tl.job_seen.values(), default=t_end) - t_start
    tail = t_end - max(tl.terminated.values(), default=t_start)
    # slot-seconds between a termination seen and the slot's next Job seen, per attempt
    gap = (p * (wall - head - tail) - sum(spans)) / max(len(spans), 1)
    ctr = containerd_times(offset, namespace)
    core.delete_namespace(namespace)
    shutil.rmtree(work, ignore_errors=True)
    return {"kind": kind, "wall": wall, "pods": len(spans), "visible_floor": sum(spans) / p,
            "in_flight": sum(spans) / wall, "stages": stages(tl, ctr), "head": head, "tail": tail, "gap": gap}


def _run_batchdrain(namespace: str, n: int, p: int, image: str, work: Path, *, nice: bool) -> tuple[float, float]:
    """vs_shell_loop's batchdrain run; returns (wall, epoch at the drain's start: after the import)."""
    started: list[float] = []
    real = subprocess.run

    def timed(args: list[str], **kw: Any) -> Any:
        if "drain" in args:
            started.append(time.time())
            if nice:
                args = ["nice", "-n", "19", *args]
        return real(args, **kw)

    subprocess.run = timed  # type: ignore[assignment]
    try:
        wall = vs.run_batchdrain(namespace, n, p, image, work)
    finally:
        subprocess.run = real
    return wall, started[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="loop,ideal,batchdrain")
    parser.add_argument("--image", default=os.environ.get("BATCHDRAIN_E2E_IMAGE", "batchdrain:dev"))
    args = parser.parse_args()
    config.load_kube_config()
    kinds = args.kinds.split(",")
    results = []
    for r in range(args.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind in order:
            res = one(kind, n=args.phases, p=args.parallelism, image=args.image)
            results.append(res)
            st = " ".join(f"{k} {v:.2f}" for k, v in res["stages"].items())
            print(f"{dt.datetime.now():%H:%M:%S} {kind}: wall {res['wall']:.1f}s, {res['pods']} pods, "
                  f"visible floor {res['visible_floor']:.1f}s, in flight {res['in_flight']:.1f}, "
                  f"head {res['head']:.1f}s, "
                  f"tail {res['tail']:.1f}s, gap {res['gap']:.2f}s | {st}",
                  file=sys.stderr, flush=True)
    print("| kind | runs | wall (s) | visible floor (s) | pods in flight | head (s) | tail (s) | gap (s) | "
          + " | ".join(STAGES) + " |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(STAGES))
    for kind in kinds:
        rs = [r for r in results if r["kind"] == kind]
        def rng(key: str, rs: list[dict[str, Any]] = rs) -> str:
            vals = sorted(r[key] for r in rs)
            return f"{statistics.median(vals):.1f} ({vals[0]:.1f}-{vals[-1]:.1f})"
        st = " | ".join(f"{statistics.median(r['stages'][s] for r in rs):.2f}" for s in STAGES)
        print(f"| {kind} | {len(rs)} | {rng('wall')} | {rng('visible_floor')} | {rng('in_flight')} | "
              f"{rng('head')} | {rng('tail')} | {rng('gap')} | {st} |")


if __name__ == "__main__":
    main()
