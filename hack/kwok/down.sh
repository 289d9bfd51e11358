#!/usr/bin/env bash
# Stop kwok and delete its fake nodes (hack/kwok/up.sh); the cluster stays up.
#
# Pods still bound to a fake node are deleted with it (nothing else would ever
# finish them): batchdrain's own finalizer is removed from those first, since
# no controller of a finished drain will. `--keep-nodes` only stops kwok
# (up.sh uses it to restart kwok without recreating the nodes).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $EUID -eq 0 ]] || die "run as root"
keep_nodes=""
case "${1:-}" in
  "") ;;
  --keep-nodes) keep_nodes=1 ;;
  *) die "usage: down.sh [--keep-nodes]" ;;
esac
KUBECTL="$BIN_DIR/kubectl"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=60s "$@"; }
T0=$SECONDS

if [[ -z "$keep_nodes" ]] && [[ -f "$KUBECONFIG_ADMIN" ]] && k get --raw /readyz >/dev/null 2>&1; then
  # Pods on fake nodes: strip finalizers and delete them at once (kwok, which
  # would play their deletion, is about to stop).
  k get pods -A --field-selector=spec.nodeName!= -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name} {.spec.nodeName}{"\n"}{end}' \
    | awk '$3 ~ /^kwok-node-/' | while read -r ns name _; do
        k -n "$ns" patch pod "$name" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        k -n "$ns" delete pod "$name" --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
      done
  n="$(k get nodes -l type=kwok -o name | wc -l)"
  if ((n > 0)); then
    k delete nodes -l type=kwok --wait=false >/dev/null
    log "deleted $n fake nodes"
  fi
fi

pid="$(cat "$KWOK_PID" 2>/dev/null || true)"
if [[ -n "$pid" ]] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$KWOK_BIN"; then
  kill -TERM "$pid"
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.2; done
  alive "$pid" && kill -KILL "$pid"
  log "kwok stopped"
fi
rm -f "$KWOK_PID"
if [[ -s "$KWOK_STATE/sysctl.orig" ]]; then
  while IFS='=' read -r key val; do sysctl -qw "$key=$val" 2>/dev/null || true; done <"$KWOK_STATE/sysctl.orig"
  rm -f "$KWOK_STATE/sysctl.orig"
  log "restored the inotify limit"
fi
log "down in $((SECONDS - T0))s"
