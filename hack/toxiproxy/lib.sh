# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared settings for hack/toxiproxy/*.sh. Sourced, not run.
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.12.0}"
TOXIPROXY_DIR="$CACHE_ROOT/toxiproxy-$TOXIPROXY_VERSION"
TOXIPROXY_SERVER="$TOXIPROXY_DIR/bin/toxiproxy-server"
TOXIPROXY_CLI="$TOXIPROXY_DIR/bin/toxiproxy-cli"

log() { echo "[toxiproxy] $*"; }
die() { echo "[toxiproxy] ERROR: $*" >&2; exit 1; }
