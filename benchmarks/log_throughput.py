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
from pathlib import Path

from kubernetes import client, config
from vs_shell_loop import kubectl  # benchmarks/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = b"LOG-END\n"


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


def one_round(core: client.CoreV1Api, namespace: str, kubeconfig: str, image: str, mb: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bd-logbench-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCHDRAIN_")},
           "PYTHONPATH": str(ROOT / "controller")}
    db = f"sqlite:///{work / 'backlog.db'}"
    cli = [sys.executable, "-m", "batchdrain.cli"]
    subprocess.run([*cli, "enqueue", "--database-url", db, "--run-id", "logs", "--phase-id", "burst", "--",
                    *phase_command(mb)], env=env, check=True, capture_output=True)
    drain = subprocess.Popen(
        [*cli, "drain", "--database-url", db, "--executor", "kubernetes", "--kubeconfig", kubeconfig,
         "--namespace", namespace, "--default-image", image, "--image-pull-policy", "IfNotPresent",
         "--log-store", str(work / "logs"), "--quiet", "--default-timeout-seconds", "600"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pod = None
        while pod is None:
            selector = "app.kubernetes.io/managed-by=batchdrain"
            for p in core.list_namespaced_pod(namespace, label_selector=selector).items:
                states = [s.state.running for s in (p.status.container_statuses or [])]
                if p.status.phase == "Running" and any(states) and not p.metadata.deletion_timestamp:
                    pod = p.metadata.name
            time.sleep(0.02)
        seen_running = time.monotonic()
        kubectl_file = work / "kubectl.log"
        with kubectl_file.open("wb") as out:
            follower = subprocess.Popen([kubectl(), "--kubeconfig", kubeconfig, "-n", namespace, "logs", "-f",
                                         pod, "-c", "phase"], stdout=out, stderr=subprocess.DEVNULL)
            done: dict[str, float] = {}
            deadline = time.monotonic() + 600
            while len(done) < 2 and time.monotonic() < deadline:
                if "kubectl" not in done and ends_with_sentinel(kubectl_file):
                    done["kubectl"] = time.monotonic() - seen_running
                ours = list((work / "logs").rglob("*.stdout.log")) + list((work / "logs").rglob("*.attempt-1.log"))
                if "batchdrain" not in done and ours and ends_with_sentinel(ours[0]):
                    done["batchdrain"] = time.monotonic() - seen_running
                time.sleep(0.01)
            follower.kill()
            follower.wait()
        # Let the drain finish the attempt properly: delete the pod's Job via its own path
        # by deleting the pod (class pod_deleted), then wait for the session to end.
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
        drain.wait(timeout=300)
    finally:
        drain.kill()
        if drain.stderr:
            drain.stderr.close()
    if len(done) < 2:
        sys.exit(f"a reader did not finish: {done}")
    bytes_out = mb * 10000 * 100
    shutil.rmtree(work, ignore_errors=True)
    return {name: bytes_out / 1e6 / seconds for name, seconds in done.items()} | {
        f"{name}_seconds": seconds for name, seconds in done.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", default="batchdrain:dev")
    args = parser.parse_args()
    kubeconfig = os.environ.get("KUBECONFIG") or sys.exit("set KUBECONFIG")
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    namespace = f"bd-logbench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        while not core.list_namespaced_service_account(namespace).items:
            time.sleep(0.2)
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
