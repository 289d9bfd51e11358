#!/usr/bin/env bash
# Bring up a single-node Kubernetes cluster from upstream components running as
# host processes (the shape of kubernetes' hack/local-up-cluster.sh; recipe in
# shared/docs/CLUSTER.md).
#
# State lives in /var/lib/batchdrain-cluster (pki/, *.kubeconfig, etcd/,
# containerd/, kubelet/, net.d/, logs/) and /run/batchdrain-cluster (sockets,
# pid files); binaries in ~/.cache/batchdrain/k8s-<version>/bin (build.sh runs
# first when one is missing). The admin kubeconfig is always
# /var/lib/batchdrain-cluster/admin.kubeconfig; kubectl is in the bin folder.
#
# Idempotent: when the cluster is already up and healthy this only prints the
# export line; otherwise it runs down.sh and starts a fresh cluster (new etcd,
# new certificates). FRESH=1 forces a fresh cluster.
# `up.sh --print-bin-dir` / `--print-kubeconfig` only print those paths.
#
# Components: etcd (127.0.0.1:2379, plain HTTP on loopback), kube-apiserver
# (:6443, advertised on the node IP, PodLogsQuerySplitStreams on),
# kube-controller-manager, kube-scheduler, a dedicated containerd with CRI
# (own socket/root; restrict_oom_score_adj, runc v2 with cgroupfs), the Debian
# CNI bridge on cni0 (10.88.0.0/16), a home-built static pause image, kubelet
# (cgroupfs) and kube-proxy (iptables). Images in ~/.cache/batchdrain/images/
# load/*.tar (see hack/images.sh) are imported into containerd's k8s.io
# namespace at bring-up.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

WAIT_APISERVER_S="${WAIT_APISERVER_S:-90}"
WAIT_NODE_S="${WAIT_NODE_S:-120}"
WAIT_SA_S="${WAIT_SA_S:-60}"
KUBECTL="$BIN_DIR/kubectl"
T0=$SECONDS

case "${1:-}" in
  "") ;;
  --print-bin-dir) echo "$BIN_DIR"; exit 0 ;;             # where kubectl & co. are
  --print-kubeconfig) echo "$KUBECONFIG_ADMIN"; exit 0 ;;
  *) die "usage: up.sh [--print-bin-dir|--print-kubeconfig]" ;;
esac

[[ $EUID -eq 0 ]] || die "run as root (containerd, kubelet, iptables)"

k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=10s "$@"; }

pid_alive() { local p; p="$(cat "$RUN_DIR/$1.pid" 2>/dev/null)" && [[ -n "$p" ]] && alive "$p"; }

node_ready() {
  [[ "$(k get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == "True" ]]
}

# Fingerprint of the scripts and binaries that define the cluster: a running
# cluster made by a different up.sh/lib.sh or other binaries is not reused.
fingerprint() { cat "$HERE/up.sh" "$HERE/lib.sh" <(ls -l --time-style=+%s "$BIN_DIR") 2>/dev/null | sha256sum | cut -d' ' -f1; }

healthy() {
  local c
  [[ -x "$KUBECTL" && -f "$KUBECONFIG_ADMIN" ]] || return 1
  [[ "$(cat "$RUN_DIR/fingerprint" 2>/dev/null)" == "$(fingerprint)" ]] || return 1
  for c in "${COMPONENTS_IN_ORDER[@]}"; do pid_alive "$c" || return 1; done
  k get --raw /readyz >/dev/null 2>&1 && node_ready
}

print_export() {
  log "kubectl: $KUBECTL"
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
}

# wait_for DESC SECONDS CMD...: poll CMD every 0.5s until it succeeds or the
# deadline passes; on timeout show the relevant logs and fail.
wait_for() {
  local desc="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      "$HERE/logs.sh" >&2 || true
      die "timed out after ${secs}s waiting for $desc"
    fi
    sleep 0.5
  done
  log "$desc: ok (t=$((SECONDS - T0))s)"
}

# start NAME CMD...: run CMD as a detached host process, log to logs/NAME.log.
start() {
  local name="$1"; shift
  log "starting $name"
  setsid nohup "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

if [[ -z "${FRESH:-}" ]] && healthy; then
  log "cluster already up and healthy"
  print_export
  exit 0
fi

# --- prerequisites ---------------------------------------------------------------
apt_ensure containerd:containerd runc:runc iptables:iptables conntrack:conntrack \
  openssl:openssl gcc:gcc ip:iproute2 mount:mount nsenter:util-linux curl:curl
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap && -x /usr/lib/cni/loopback ]] \
  || apt_install containernetworking-plugins
[[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/libc.a ]] || apt_install libc6-dev

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  if [[ ! -x "$BIN_DIR/$b" ]]; then
    log "binary $b missing: running build.sh (cold build takes 20-40 minutes)"
    "$HERE/build.sh"
    break
  fi
done

log "tearing down any previous cluster"
"$HERE/down.sh" >/dev/null

NODE_IP="$(node_ip)"
log "node $NODE_NAME, IP $NODE_IP, Kubernetes $K8S_VERSION, state in $STATE_DIR"

# Wipe the previous cluster's state (down.sh left it for post-mortems).
if grep -qF " $STATE_DIR/" /proc/self/mountinfo; then die "mounts remain under $STATE_DIR after down.sh"; fi
rm -rf "$STATE_DIR"
mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$PKI_DIR" "$ETCD_DATA" "$CONTAINERD_ROOT" \
  "$CONTAINERD_STATE" "$KUBELET_ROOT" "$CNI_CONF_DIR" "$STATE_DIR/cni-ipam" "$IMAGES_DIR" "$LOAD_DIR"
chmod 700 "$PKI_DIR" "$ETCD_DATA"

# --- kernel settings -----------------------------------------------------------
# Record the sysctls that we and the kubelet (setupKernelTunables) change, so
# down.sh can put them back.
modprobe overlay 2>/dev/null || true
modprobe br_netfilter 2>/dev/null || true
: >"$RUN_DIR/sysctl.orig"
for key in $SYSCTLS_TOUCHED; do
  v="$(sysctl -n "$key" 2>/dev/null)" && echo "$key=$v" >>"$RUN_DIR/sysctl.orig"
done
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "note: br_netfilter unavailable (bridge-nf-call-iptables not set)"

# --- 1. certificates and kubeconfigs ------------------------------------------
log "generating certificates (openssl)"
ossl() { openssl "$@" 2>>"$LOG_DIR/openssl.log"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj "/CN=batchdrain-cluster-ca" \
  -keyout "$PKI_DIR/ca.key" -out "$PKI_DIR/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"

# cert NAME SUBJECT EXTKEYUSAGE [SAN]
cert() {
  local name="$1" subj="$2" eku="$3" san="${4:-}"
  local ext="$PKI_DIR/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    if [[ -n "$san" ]]; then echo "subjectAltName=$san"; fi
  } >"$ext"
  ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" -keyout "$PKI_DIR/$name.key" -out "$PKI_DIR/$name.csr"
  ossl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI_DIR/$name.crt"
  rm -f "$PKI_DIR/$name.csr" "$ext"
}
cert apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$SERVICE_IP,IP:$NODE_IP"
cert admin "/O=system:masters/CN=kubernetes-admin" clientAuth
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert kube-proxy "/CN=system:kube-proxy" clientAuth
cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth,clientAuth \
  "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
# Front-proxy (request-header) CA and client, as kubeadm does; without them the
# controller-manager and scheduler log errors about a missing CA bundle.
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj "/CN=batchdrain-front-proxy-ca" \
  -keyout "$PKI_DIR/front-proxy-ca.key" -out "$PKI_DIR/front-proxy-ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=front-proxy-client" \
  -keyout "$PKI_DIR/front-proxy-client.key" -out "$PKI_DIR/front-proxy-client.csr"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
  >"$PKI_DIR/front-proxy-client.ext"
ossl x509 -req -in "$PKI_DIR/front-proxy-client.csr" -CA "$PKI_DIR/front-proxy-ca.crt" \
  -CAkey "$PKI_DIR/front-proxy-ca.key" -CAcreateserial -days 3650 -sha256 \
  -extfile "$PKI_DIR/front-proxy-client.ext" -out "$PKI_DIR/front-proxy-client.crt"
rm -f "$PKI_DIR/front-proxy-client.csr" "$PKI_DIR/front-proxy-client.ext"
ossl genrsa -out "$PKI_DIR/sa.key" 2048
ossl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub"

# kubeconfig NAME: certificates embedded; components talk to the apiserver on
# loopback (in its SANs).
kubeconfig() {
  local name="$1" file="$STATE_DIR/$1.kubeconfig"
  local kc=("$KUBECTL" --kubeconfig "$file" config)
  "${kc[@]}" set-cluster batchdrain --server="https://127.0.0.1:6443" \
    --certificate-authority="$PKI_DIR/ca.crt" --embed-certs=true >/dev/null
  "${kc[@]}" set-credentials "$name" --client-certificate="$PKI_DIR/$name.crt" \
    --client-key="$PKI_DIR/$name.key" --embed-certs=true >/dev/null
  "${kc[@]}" set-context batchdrain --cluster=batchdrain --user="$name" >/dev/null
  "${kc[@]}" use-context batchdrain >/dev/null
  chmod 600 "$file"
}
for id in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$id"; done

# --- 2. etcd ---------------------------------------------------------------------
start etcd "$BIN_DIR/etcd" --name batchdrain --data-dir "$ETCD_DATA" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster batchdrain=http://127.0.0.1:2380 --initial-cluster-state new \
  --listen-metrics-urls http://127.0.0.1:2381 \
  --unsafe-no-fsync --snapshot-count 10000 --log-level warn

# --- 5+6+7. containerd, CNI, pause image (independent of the control plane) -----
cat >"$CNI_CONF_DIR/10-bridge.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "batchdrain",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE_DIR/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON

cat >"$CONTAINERD_CONFIG" <<TOML
# Dedicated containerd for the batchdrain test cluster (Docker's own has CRI
# disabled). Written by hack/cluster/up.sh.
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM lacks CAP_SYS_RESOURCE: without this runc fails with
  # "can't get final child's PID from pipe" when lowering oom_score_adj.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
TOML
start containerd containerd --config "$CONTAINERD_CONFIG"

# The pause image: a static binary that sleeps in pause(), reaps children and
# exits on SIGTERM/SIGINT, packed as a docker-archive tarball (cached).
PAUSE_TAR="$IMAGES_DIR/pause-${PAUSE_IMAGE##*:}.tar"
build_pause() {
  [[ -s "$PAUSE_TAR" ]] && return 0
  log "building the pause image ($PAUSE_IMAGE)"
  local d; d="$(mktemp -d)"
  cat >"$d/pause.c" <<'C'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0};
  a.sa_handler = on_term; sigaction(SIGINT, &a, 0); sigaction(SIGTERM, &a, 0);
  a.sa_handler = on_chld; a.sa_flags = SA_NOCLDSTOP | SA_RESTART; sigaction(SIGCHLD, &a, 0);
  for (;;) pause();
}
C
  mkdir -p "$d/rootfs" "$d/img"
  gcc -Os -static -o "$d/rootfs/pause" "$d/pause.c"
  strip "$d/rootfs/pause" 2>/dev/null || true
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$d/rootfs" -cf "$d/img/layer.tar" pause
  local diff_id; diff_id="sha256:$(sha256sum "$d/img/layer.tar" | cut -d' ' -f1)"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created_by":"hack/cluster/up.sh"}]}' \
    "$diff_id" >"$d/img/config.json"
  local cfg; cfg="$(sha256sum "$d/img/config.json" | cut -d' ' -f1).json"
  mv "$d/img/config.json" "$d/img/$cfg"
  printf '[{"Config":"%s","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$cfg" "$PAUSE_IMAGE" >"$d/img/manifest.json"
  tar -C "$d/img" -cf "$PAUSE_TAR.tmp" manifest.json "$cfg" layer.tar
  mv -f "$PAUSE_TAR.tmp" "$PAUSE_TAR"
  rm -rf "$d"
}
build_pause

# --- 3. kube-apiserver -----------------------------------------------------------
wait_for "etcd health" 30 curl -fsS http://127.0.0.1:2379/health
start kube-apiserver "$BIN_DIR/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port=6443 \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  --client-ca-file="$PKI_DIR/ca.crt" \
  --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
  --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI_DIR/ca.crt" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI_DIR/sa.pub" \
  --service-account-signing-key-file="$PKI_DIR/sa.key" \
  --requestheader-client-ca-file="$PKI_DIR/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI_DIR/front-proxy-client.crt" \
  --proxy-client-key-file="$PKI_DIR/front-proxy-client.key" \
  --feature-gates=PodLogsQuerySplitStreams=true \
  --profiling=false --v=1

wait_for "containerd socket" 30 containerd_up
ctr_k8s images import "$PAUSE_TAR" >/dev/null
shopt -s nullglob
for tar in "$LOAD_DIR"/*.tar; do
  log "importing $(basename "$tar") into containerd (k8s.io)"
  ctr_k8s images import "$tar" >/dev/null || die "ctr import of $tar failed"
done
shopt -u nullglob

wait_for "kube-apiserver /readyz" "$WAIT_APISERVER_S" k get --raw /readyz

# --- 4. controller-manager and scheduler -------------------------------------
start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 \
  --root-ca-file="$PKI_DIR/ca.crt" \
  --service-account-private-key-file="$PKI_DIR/sa.key" \
  --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
  --use-service-account-credentials=true --leader-elect=false \
  --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false \
  --profiling=false --v=1
start kube-scheduler "$BIN_DIR/kube-scheduler" \
  --kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1

# --- 8. kubelet ------------------------------------------------------------------
cat >"$STATE_DIR/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$NODE_IP"
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI_DIR/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI_DIR/kubelet.crt"
tlsPrivateKeyFile: "$PKI_DIR/kubelet.key"
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
failSwapOn: false
clusterDomain: cluster.local
# Our images exist only locally: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
evictionPressureTransitionPeriod: 30s
# kubectl logs reads only the current file: keep large logs unrotated.
containerLogMaxSize: 256Mi
containerLogMaxFiles: 2
serializeImagePulls: false
volumePluginDir: "$STATE_DIR/kubelet-plugins"
kubeAPIQPS: 50
kubeAPIBurst: 100
shutdownGracePeriod: 0s
featureGates:
  PodLogsQuerySplitStreams: true
YAML
start kubelet "$BIN_DIR/kubelet" \
  --config="$STATE_DIR/kubelet-config.yaml" \
  --kubeconfig="$STATE_DIR/kubelet.kubeconfig" \
  --root-dir="$KUBELET_ROOT" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1

# --- 9. kube-proxy (iptables) -------------------------------------------------------
cat >"$STATE_DIR/kube-proxy-config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: "$STATE_DIR/kube-proxy.kubeconfig"
mode: iptables
clusterCIDR: "$POD_CIDR"
hostnameOverride: "$NODE_NAME"
bindAddress: "$NODE_IP"
healthzBindAddress: "127.0.0.1:10256"
metricsBindAddress: "127.0.0.1:10249"
# Leave the conntrack sysctls alone (0 = do not change).
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
nodePortAddresses: ["primary"]
iptables:
  localhostNodePorts: false
YAML
start kube-proxy "$BIN_DIR/kube-proxy" --config="$STATE_DIR/kube-proxy-config.yaml" --v=1

# --- 10. wait ----------------------------------------------------------------------
wait_for "kubelet /healthz" 60 curl -fsS http://127.0.0.1:10248/healthz
wait_for "node $NODE_NAME Ready" "$WAIT_NODE_S" node_ready
wait_for "ServiceAccount default/default" "$WAIT_SA_S" k -n default get serviceaccount default
wait_for "kube-proxy /healthz" 60 curl -fsS http://127.0.0.1:10256/healthz
wait_for "kube-controller-manager /healthz" 30 curl -fsSk https://127.0.0.1:10257/healthz
wait_for "kube-scheduler /healthz" 30 curl -fsSk https://127.0.0.1:10259/healthz
fingerprint >"$RUN_DIR/fingerprint"
log "cluster up in $((SECONDS - T0))s"
print_export
