#!/usr/bin/env bash
# Smoke test of a running cluster and the batchdrain:dev image (hack/images.sh):
#   - a Job running our image with imagePullPolicy: Never completes; its logs
#     are readable with kubectl logs;
#   - split streams (PodLogsQuerySplitStreams): the log API's stream=Stdout /
#     stream=Stderr return only that stream;
#   - a pod over its memory limit ends with reason OOMKilled;
#   - a pod reaches the apiserver through the `kubernetes` Service (kube-proxy)
#     with its ServiceAccount token.
# Uses its own namespace, deleted at the end; every wait is bounded.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_ADMIN}"
KUBECTL="${KUBECTL:-$BIN_DIR/kubectl}"
IMAGE="${IMAGE:-batchdrain:dev}"
NS="batchdrain-smoke-$$"
k() { "$KUBECTL" --request-timeout=30s "$@"; }
fail() { echo "[cluster] SMOKE FAIL: $*" >&2; k -n "$NS" get pods -o wide >&2 || true; k -n "$NS" get events >&2 || true; exit 1; }
cleanup() { k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

k create namespace "$NS" >/dev/null
# The ServiceAccount token controller creates `default` asynchronously.
for _ in $(seq 1 60); do k -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.5; done

cat <<YAML | k -n "$NS" apply -f - >/dev/null
apiVersion: batch/v1
kind: Job
metadata: {name: hi}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: $IMAGE
        imagePullPolicy: Never
        command: ["python3", "-c", "import sys; print('hi'); print('to-stderr', file=sys.stderr)"]
---
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    command: ["python3", "-c", "x = 'x' * (400 << 20); print(len(x))"]
    resources:
      limits: {memory: 64Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: api}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    command:
    - python3
    - -c
    - |
      import json, os, ssl, urllib.request
      sa = "/var/run/secrets/kubernetes.io/serviceaccount"
      host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
      ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
      req = urllib.request.Request(f"https://{host}:{port}/version",
          headers={"Authorization": "Bearer " + open(sa + "/token").read()})
      print(host, json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"])
YAML

k -n "$NS" wait --for=condition=Complete job/hi --timeout=90s >/dev/null || fail "job hi did not complete"
pod="$(k -n "$NS" get pods -l job-name=hi -o jsonpath='{.items[0].metadata.name}')"
out="$(k -n "$NS" logs "$pod")"
grep -qx hi <<<"$out" || fail "kubectl logs did not show 'hi' (got: $out)"
log "OK job with $IMAGE (imagePullPolicy Never) completed; kubectl logs: $(tr '\n' ' ' <<<"$out")"

stdout="$(k get --raw "/api/v1/namespaces/$NS/pods/$pod/log?stream=Stdout")"
stderr="$(k get --raw "/api/v1/namespaces/$NS/pods/$pod/log?stream=Stderr")"
[[ "$stdout" == hi && "$stderr" == to-stderr ]] || fail "split streams: stdout='$stdout' stderr='$stderr'"
log "OK split streams: stream=Stdout -> '$stdout', stream=Stderr -> '$stderr'"

k -n "$NS" wait --for=jsonpath='{.status.phase}'=Failed pod/oom --timeout=90s >/dev/null || fail "oom pod did not fail"
reason="$(k -n "$NS" get pod oom -o jsonpath='{.status.containerStatuses[0].state.terminated.reason}')"
code="$(k -n "$NS" get pod oom -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')"
[[ "$reason" == OOMKilled ]] || fail "oom pod terminated with reason '$reason' (exit $code), want OOMKilled"
log "OK memory-limited pod: reason $reason, exit code $code"

k -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/api --timeout=90s >/dev/null \
  || { k -n "$NS" logs api >&2 || true; fail "pod could not reach the apiserver via the kubernetes Service"; }
log "OK in-cluster API access via Service: $(k -n "$NS" logs api)"
log "smoke test passed"
