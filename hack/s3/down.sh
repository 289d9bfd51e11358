#!/usr/bin/env bash
# Stop the S3 server up.sh started from $S3_STATE (its pid file); keeps the data
# unless --wipe. Touches nothing else: no cluster, no other process.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

if [[ -f "$S3_PID" ]]; then
  pid="$(cat "$S3_PID")"
  if kill -0 "$pid" 2>/dev/null && grep -qa weed "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    log "stopped weed (pid $pid)"
  fi
  rm -f "$S3_PID"
fi
if [[ "${1:-}" == --wipe ]]; then
  rm -rf "$S3_STATE"
  log "removed $S3_STATE"
fi
