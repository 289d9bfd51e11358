#!/usr/bin/env bash
# Print the tail of every cluster component's log (CI calls this on failure).
# LINES=N changes the tail length (default 60). Works after down.sh too.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

lines="${LINES:-60}"
if [[ ! -d "$LOG_DIR" ]]; then
  log "no logs in $LOG_DIR (cluster never started?)"
  exit 0
fi
for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
  f="$LOG_DIR/$c.log"
  [[ -f "$f" ]] || continue
  state="stopped"
  if pid="$(cat "$RUN_DIR/$c.pid" 2>/dev/null)" && alive "$pid"; then state="running, pid $pid"; fi
  echo "[cluster] ===== $c ($state): last $lines lines of $f ====="
  tail -n "$lines" "$f"
done
for f in "$LOG_DIR"/*.log; do
  case "$(basename "$f" .log)" in
    etcd|kube-apiserver|kube-controller-manager|kube-scheduler|containerd|kubelet|kube-proxy) continue ;;
  esac
  [[ -s "$f" ]] || continue
  echo "[cluster] ===== $(basename "$f"): last $lines lines ====="
  tail -n "$lines" "$f"
done
if [[ -x "$BIN_DIR/kubectl" && -f "$KUBECONFIG_ADMIN" ]] && [[ -f "$RUN_DIR/kube-apiserver.pid" ]]; then
  echo "[cluster] ===== nodes and recent events ====="
  "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=5s get nodes -o wide 2>&1 || true
  "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=5s get events -A \
    --sort-by=.lastTimestamp 2>&1 | tail -n 30 || true
fi
