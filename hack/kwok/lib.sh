# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared settings for hack/kwok/*.sh. Sourced, not run.
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
KWOK_DIR="$CACHE_ROOT/kwok-$KWOK_VERSION"
KWOK_BIN="$KWOK_DIR/bin/kwok"
KWOK_STATE="$STATE_DIR/kwok"          # config, certificates, served log file
KWOK_PID="$RUN_DIR/kwok.pid"
KWOK_LOG="$LOG_DIR/kwok.log"

log() { echo "[kwok] $*"; }
die() { echo "[kwok] ERROR: $*" >&2; exit 1; }
