#!/usr/bin/env bash
# Tear down the cluster that up.sh started: every process it started (by the
# pids it recorded), the pods' processes (via their kubepods cgroups), the
# containerd shims of our containerd (found by its unique socket path), every
# mount under the kubelet/containerd state and the CNI netns, the cni0 bridge,
# and the iptables chains that kube-proxy, kubelet and the CNI plugins added
# (every KUBE-* and CNI-* chain and every rule jumping to one).
#
# Keeps ~/.cache/batchdrain (binaries, images) and /var/lib/batchdrain-cluster
# (logs, certificates, kubeconfigs) for post-mortems: logs.sh still works after
# down.sh; up.sh wipes the state dir when it starts a fresh cluster.
# Idempotent: safe to run when nothing is up.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $EUID -eq 0 ]] || die "run as root"

# stop_pid NAME PID: SIGTERM, up to 10s grace, then SIGKILL.
stop_pid() {
  local name="$1" pid="$2"
  alive "$pid" || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || return 0; sleep 0.1; done
  log "$name did not exit on SIGTERM within 10s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
}

stop_component() {
  local name="$1" pidfile="$RUN_DIR/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  # Only signal the pid if it still runs the binary we started.
  if [[ -n "$pid" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"; then
    stop_pid "$name" "$pid"
  fi
  rm -f "$pidfile"
}

# Pod processes: every pid in a kubepods cgroup (the kubelet's cgroupfs tree).
kill_pod_processes() {
  local pids
  pids="$(cat /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs 2>/dev/null | sort -u || true)"
  [[ -n "$pids" ]] || return 0
  log "killing $(wc -w <<<"$pids") pod processes"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
}

# containerd-shim-runc-v2 processes serving our containerd (their command line
# names our socket, which no other containerd uses).
kill_our_shims() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null || true)"
    case "$cmd" in
      *containerd-shim*"-address $CONTAINERD_SOCK "*|*containerd-shim*"-address $CONTAINERD_SOCK") stop_pid shim "${p#/proc/}" ;;
    esac
  done
}

unmount_under() {
  local dir="$1" m
  # deepest first
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
}

remove_kubepods_cgroups() {
  local ctl
  for ctl in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d "$ctl" ]] || continue
    find "$ctl" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

clean_iptables() {
  local save restore
  for save in iptables-save ip6tables-save; do
    command -v "$save" >/dev/null || continue
    restore="${save%-save}-restore"
    local tables; tables="$("$save" 2>/dev/null | awk '/^\*/{print substr($1,2)}')"
    local t
    for t in $tables; do
      if "$save" -t "$t" 2>/dev/null | grep -qE '(KUBE-|CNI-)'; then
        "$save" -t "$t" | grep -vE '(KUBE-|CNI-)' | "$restore" -T "$t" 2>/dev/null \
          || "$save" -t "$t" | grep -vE '(KUBE-|CNI-)' | "$restore" 2>/dev/null \
          || log "warning: could not clean $t table with $restore"
        log "removed KUBE-*/CNI-* chains and rules from $save table $t"
      fi
    done
  done
}

log "tearing down (state dir $STATE_DIR kept for logs)"
# kwok (hack/kwok/up.sh), if running, plays nodes of this cluster only.
stop_component kwok
stop_component kube-proxy
stop_component kube-scheduler
stop_component kube-controller-manager
stop_component kubelet
kill_pod_processes
kill_our_shims
stop_component containerd
stop_component kube-apiserver
stop_component etcd

unmount_under "$KUBELET_ROOT"
unmount_under "$CONTAINERD_STATE"
unmount_under "$CONTAINERD_ROOT"
# network namespaces the CRI plugin created for pod sandboxes
for ns in /run/netns/cni-*; do
  [[ -e "$ns" ]] || continue
  umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
  rm -f "$ns"
done
remove_kubepods_cgroups

if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  log "deleting bridge $CNI_BRIDGE"
  ip link delete "$CNI_BRIDGE" || true
fi
# Any kube-ipvs0 / leftover veths are removed with their netns; the bridge is ours.
clean_iptables
# Conntrack entries for pod and service addresses.
if command -v conntrack >/dev/null; then
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$SERVICE_CIDR" >/dev/null 2>&1 || true
fi
if [[ -s "$RUN_DIR/sysctl.orig" ]]; then
  log "restoring sysctls changed by up.sh and the kubelet"
  while IFS='=' read -r key val; do sysctl -qw "$key=$val" 2>/dev/null || true; done <"$RUN_DIR/sysctl.orig"
  rm -f "$RUN_DIR/sysctl.orig"
fi
rm -f "$RUN_DIR"/*.pid "$RUN_DIR/fingerprint"
rm -rf "$CONTAINERD_STATE"
log "down"
