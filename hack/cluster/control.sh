#!/usr/bin/env bash
# Stop and start single components of the running cluster, for the fault tests
# (tests/faults): the apiserver stopped for a while, the kubelet restarted.
#
#   control.sh stop NAME      SIGTERM (then SIGKILL after 10s); remembers the command line
#   control.sh start NAME     starts NAME again with the command line it last ran with
#   control.sh restart NAME   stop + start
#
# NAME is one of the components up.sh starts (kube-apiserver, kubelet, ...). The
# same verbs for kind live in hack/kind/control.sh; the tests only call this interface.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $EUID -eq 0 ]] || die "run as root"
(($# == 2)) || die "usage: control.sh stop|start|restart COMPONENT"
verb="$1" name="$2"
[[ " ${COMPONENTS_IN_ORDER[*]} " == *" $name "* ]] || die "unknown component $name (one of: ${COMPONENTS_IN_ORDER[*]})"
pidfile="$RUN_DIR/$name.pid"
cmdfile="$RUN_DIR/$name.cmdline"

stop() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ -z "$pid" ]] || ! alive "$pid"; then
    log "$name is not running"
    return 0
  fi
  # The NUL-separated command line, so start can run exactly what up.sh ran.
  cp "/proc/$pid/cmdline" "$cmdfile"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 100); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
  die "$name (pid $pid) did not stop"
}

start() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && alive "$pid"; then
    log "$name already running (pid $pid)"
    return 0
  fi
  [[ -s "$cmdfile" ]] || die "no saved command line for $name: stop it with this script first"
  local -a cmd
  mapfile -d '' -t cmd <"$cmdfile"
  log "starting $name"
  setsid nohup "${cmd[@]}" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

case "$verb" in
  stop) stop ;;
  start) start ;;
  restart) stop; start ;;
  *) die "unknown verb $verb (stop|start|restart)" ;;
esac
