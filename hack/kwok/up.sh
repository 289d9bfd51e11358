#!/usr/bin/env bash
# Start kwok against the running test cluster (hack/cluster/up.sh) and create
# KWOK_NODES fake nodes that only batchdrain's scale Jobs use.
#
# kwok runs as a host process with the cluster's admin kubeconfig and manages
# only the nodes labelled type=kwok. Everything it does comes from one config
# file (no CRDs are installed in the cluster, so nothing of kwok can touch pods
# on the real node):
#   * the pod stages of kwok's kustomize/stage/pod/general (pod-create,
#     pod-ready, pod-complete for Job-owned pods, pod-delete once no finalizer
#     is left; 1 s + up to 5 s jitter each), node stages kwok's defaults
#     (initialise, heartbeat through a Lease);
#   * one ClusterLogs rule: every container's log is $KWOK_STATE/phase.log,
#     a CRI-format file (what a kubelet reads), the same for every pod.
# Fake nodes report InternalIP = the machine's IP and kubelet port KWOK_PORT,
# where kwok serves the kubelet API over TLS with a certificate from the
# cluster CA (the apiserver checks it: --kubelet-certificate-authority), so
# `GET pods/NAME/log` goes apiserver -> kwok -> the file.
#
# Pods reach the fake nodes only with
#   nodeSelector type=kwok  and  toleration kwok.x-k8s.io/node=fake:NoSchedule
# (batchdrain: BATCHDRAIN_NODE_SELECTOR / BATCHDRAIN_TOLERATIONS, printed at the end).
#
# Re-runnable: a running kwok is stopped first; nodes are created or kept.
# Knobs: KWOK_NODES (default 100), KWOK_PORT (10350), KWOK_LOG_LINES (3).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

KWOK_NODES="${KWOK_NODES:-100}"
KWOK_PORT="${KWOK_PORT:-10350}"
KWOK_LOG_LINES="${KWOK_LOG_LINES:-3}"
KUBECTL="$BIN_DIR/kubectl"
T0=$SECONDS

[[ $EUID -eq 0 ]] || die "run as root (reads the cluster CA key in $PKI_DIR)"
[[ "$KWOK_NODES" =~ ^[0-9]+$ && "$KWOK_NODES" -ge 1 ]] || die "KWOK_NODES must be a positive integer"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=30s "$@"; }
[[ -x "$KUBECTL" && -f "$KUBECONFIG_ADMIN" ]] && k get --raw /readyz >/dev/null 2>&1 \
  || die "the test cluster is not up: run hack/cluster/up.sh first"

"$HERE/build.sh"
"$HERE/down.sh" --keep-nodes >/dev/null

NODE_IP="$(node_ip)"
mkdir -p "$KWOK_STATE"

# --- serving certificate for kwok's kubelet endpoint --------------------------
ext="$KWOK_STATE/serving.ext"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,IP:127.0.0.1,DNS:localhost\n' \
  "$NODE_IP" >"$ext"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=kwok-kubelet" \
  -keyout "$KWOK_STATE/serving.key" -out "$KWOK_STATE/serving.csr" 2>/dev/null
openssl x509 -req -in "$KWOK_STATE/serving.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
  -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$KWOK_STATE/serving.crt" 2>/dev/null
rm -f "$KWOK_STATE/serving.csr" "$ext"
chmod 600 "$KWOK_STATE/serving.key"

# --- the served log: CRI records, as a kubelet's container log file ------------
: >"$KWOK_STATE/phase.log"
for ((i = 1; i <= KWOK_LOG_LINES; i++)); do
  printf '2026-01-01T00:00:%02d.000000000Z stdout F kwok phase output line %d of %d\n' \
    "$((i % 60))" "$i" "$KWOK_LOG_LINES" >>"$KWOK_STATE/phase.log"
done

# --- kwok's config: pod stages + the logs rule ---------------------------------
STAGES="$KWOK_DIR/kustomize/stage/pod/general"
[[ -d "$STAGES" ]] || die "kwok stage manifests missing in $STAGES (re-run hack/kwok/build.sh)"
{
  cat <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  # Pod IPs are only bookkeeping here; the default /24 would run out at P > 250.
  cidr: 10.200.0.0/16
  nodeIP: $NODE_IP
  nodePort: $KWOK_PORT
  manageNodesWithLabelSelector: type=kwok
  nodeLeaseDurationSeconds: 40
  # 4 by default: one status patch at a time per worker, three per pod.
  podPlayStageParallelism: 16
  tlsCertFile: $KWOK_STATE/serving.crt
  tlsPrivateKeyFile: $KWOK_STATE/serving.key
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: phase-log
spec:
  logs:
  - logsFile: $KWOK_STATE/phase.log
    follow: true
YAML
  for f in pod-create pod-init-container-running pod-init-container-completed pod-ready pod-complete pod-delete; do
    echo "---"
    cat "$STAGES/$f.yaml"
  done
} >"$KWOK_STATE/kwok.yaml"

# kwok follows each served log with an inotify instance of its own: one per log stream
# followed (two per running attempt in split mode). Past the default 128 instances per
# user it writes "failed to create fsnotify watcher: too many open files" into the log
# it serves, so raise the limit (down.sh restores it) and kwok's open-file limit.
INOTIFY_INSTANCES="${KWOK_INOTIFY_INSTANCES:-8192}"
current="$(sysctl -n fs.inotify.max_user_instances)"
if ((current < INOTIFY_INSTANCES)); then
  [[ -s "$KWOK_STATE/sysctl.orig" ]] || echo "fs.inotify.max_user_instances=$current" >"$KWOK_STATE/sysctl.orig"
  sysctl -qw "fs.inotify.max_user_instances=$INOTIFY_INSTANCES"
  log "fs.inotify.max_user_instances $current -> $INOTIFY_INSTANCES (restored by down.sh)"
fi
ulimit -n 65536 2>/dev/null || log "note: open-file limit stays $(ulimit -n)"

log "starting kwok $KWOK_VERSION (kubelet endpoint https://$NODE_IP:$KWOK_PORT)"
setsid nohup "$KWOK_BIN" --config="$KWOK_STATE/kwok.yaml" --kubeconfig="$KUBECONFIG_ADMIN" \
  >"$KWOK_LOG" 2>&1 </dev/null &
echo $! >"$KWOK_PID"

ready() { curl -fsS --cacert "$PKI_DIR/ca.crt" "https://$NODE_IP:$KWOK_PORT/healthz" >/dev/null 2>&1; }
deadline=$((SECONDS + 60))
until ready; do
  alive "$(cat "$KWOK_PID")" || { tail -n 30 "$KWOK_LOG" >&2; die "kwok exited"; }
  ((SECONDS < deadline)) || { tail -n 30 "$KWOK_LOG" >&2; die "kwok not serving after 60s"; }
  sleep 0.5
done
log "kwok serving (t=$((SECONDS - T0))s)"

# --- fake nodes --------------------------------------------------------------------
manifest="$KWOK_STATE/nodes.yaml"
: >"$manifest"
for ((i = 0; i < KWOK_NODES; i++)); do
  cat >>"$manifest" <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
spec:
  taints:
  - key: kwok.x-k8s.io/node
    value: fake
    effect: NoSchedule
YAML
done
k apply -f "$manifest" >/dev/null
ready_nodes() {
  k get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    | grep -c '^True$' || true
}
deadline=$((SECONDS + 180))
until [[ "$(ready_nodes)" -ge "$KWOK_NODES" ]]; do
  ((SECONDS < deadline)) || die "only $(ready_nodes) of $KWOK_NODES fake nodes Ready after 180s (see $KWOK_LOG)"
  sleep 1
done
extra="$(k get nodes -l type=kwok -o name | wc -l)"
log "$KWOK_NODES fake nodes Ready ($extra labelled type=kwok) in $((SECONDS - T0))s"
cat <<EOF
export BATCHDRAIN_NODE_SELECTOR='{"type":"kwok"}'
export BATCHDRAIN_TOLERATIONS='[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]'
# served log: $KWOK_STATE/phase.log
EOF
