# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared settings for hack/kueue/*.sh. Sourced, not run.
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

KUEUE_VERSION="${KUEUE_VERSION:-v0.17.0}"
KUEUE_DIR="$CACHE_ROOT/kueue-$KUEUE_VERSION"
KUEUE_BIN="$KUEUE_DIR/bin/kueue"
KUEUE_IMAGE="registry.local/batchdrain/kueue:$KUEUE_VERSION"   # never pulled: loaded into containerd
KUEUE_TAR="$LOAD_DIR/kueue-$KUEUE_VERSION.tar"
KUEUE_NAMESPACE="kueue-system"

log() { echo "[kueue] $*"; }
die() { echo "[kueue] ERROR: $*" >&2; exit 1; }
