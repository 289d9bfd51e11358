# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared settings for hack/cluster/*.sh and hack/images.sh. Sourced, not run.
#
# Layout (all on this machine, nothing leaves it):
#   ~/.cache/batchdrain/k8s-<version>/bin   binaries from build.sh (kept by down.sh)
#   ~/.cache/batchdrain/images/             base rootfs tarball, pause image,
#                                           image tarballs loaded at bring-up
#   /var/lib/batchdrain-cluster/            cluster state: pki, kubeconfigs,
#                                           etcd data, containerd root, kubelet
#                                           root, CNI config, logs (wiped by a
#                                           fresh up.sh, kept by down.sh)
#   /run/batchdrain-cluster/                sockets and pid files

# --- pinned versions ---------------------------------------------------------
K8S_VERSION="${K8S_VERSION:-v1.33.13}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"
BUILD_GOTOOLCHAIN="${BUILD_GOTOOLCHAIN:-go1.24.13}"
# ----------------------------------------------------------------------------

CACHE_ROOT="${BATCHDRAIN_CACHE:-$HOME/.cache/batchdrain}"
K8S_DIR="$CACHE_ROOT/k8s-$K8S_VERSION"
BIN_DIR="$K8S_DIR/bin"
IMAGES_DIR="$CACHE_ROOT/images"
LOAD_DIR="$IMAGES_DIR/load"          # *.tar here are imported into containerd by up.sh

STATE_DIR="${BATCHDRAIN_CLUSTER_STATE:-/var/lib/batchdrain-cluster}"
RUN_DIR="/run/batchdrain-cluster"
LOG_DIR="$STATE_DIR/logs"
PKI_DIR="$STATE_DIR/pki"
KUBECONFIG_ADMIN="$STATE_DIR/admin.kubeconfig"

CONTAINERD_ROOT="$STATE_DIR/containerd"
CONTAINERD_STATE="$RUN_DIR/containerd"
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"
CONTAINERD_CONFIG="$STATE_DIR/containerd-config.toml"
KUBELET_ROOT="$STATE_DIR/kubelet"
ETCD_DATA="$STATE_DIR/etcd"
CNI_CONF_DIR="$STATE_DIR/net.d"   # private: nothing is written to /etc/cni
CNI_BRIDGE="cni0"
POD_CIDR="10.88.0.0/16"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1"
PAUSE_IMAGE="registry.local/batchdrain/pause:3.10"
NODE_NAME="${NODE_NAME:-batchdrain-node}"

# Set by up.sh (forwarding) and by the kubelet's kernel tunables; restored by down.sh.
SYSCTLS_TOUCHED="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

COMPONENTS_IN_ORDER=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { echo "[cluster] $*"; }
die() { echo "[cluster] ERROR: $*" >&2; exit 1; }

# node_ip: the machine's primary non-loopback IPv4 (source of the default route),
# or NODE_IP when set. The hostname resolves to 127.0.0.1 here, so every
# component gets this address explicitly.
node_ip() {
  if [[ -n "${NODE_IP:-}" ]]; then echo "$NODE_IP"; return; fi
  local ip dev
  dev="$(ip -4 route show default 2>/dev/null | awk '{for(i=1;i<NF;i++) if ($i=="dev") {print $(i+1); exit}}')"
  if [[ -n "$dev" ]]; then
    ip="$(ip -4 -o addr show dev "$dev" scope global | awk '{split($4,a,"/"); print a[1]; exit}')"
  fi
  if [[ -z "${ip:-}" ]]; then
    ip="$(ip -4 -o addr show scope global | awk '$2!="'"$CNI_BRIDGE"'" && $2!="docker0" {split($4,a,"/"); print a[1]; exit}')"
  fi
  [[ -n "$ip" ]] || die "no non-loopback IPv4 address found; set NODE_IP"
  echo "$ip"
}

# alive PID: running and not a zombie waiting for init to reap it (init on
# these machines reaps orphans only every few seconds).
alive() {
  local st
  st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# ctr_k8s ARGS...: ctr against the cluster's containerd, k8s.io namespace.
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

containerd_up() { [[ -S "$CONTAINERD_SOCK" ]] && ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

# apt_ensure CMD:PKG ...: install the Debian packages whose command is missing.
apt_ensure() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd="${pair%%:*}"; pkg="${pair#*:}"
    command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" || -x "/sbin/$cmd" ]] || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  apt_install "${missing[@]}"
}

# apt_install PKG...: non-interactive install; refreshes the package lists
# once if the first attempt fails (a fresh machine has none).
apt_install() {
  log "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "$@" >/tmp/batchdrain-apt.log 2>&1; then
    apt-get update -q >>/tmp/batchdrain-apt.log 2>&1 || true
    apt-get install -y -q --no-install-recommends "$@" >>/tmp/batchdrain-apt.log 2>&1 \
      || { tail -n 20 /tmp/batchdrain-apt.log >&2; die "apt-get install $* failed"; }
  fi
}
