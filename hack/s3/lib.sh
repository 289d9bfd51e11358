# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared settings for hack/s3/*.sh: a real S3 server (SeaweedFS) for the tests.
# Sourced, not run. Needs no root and no cluster; node_ip comes from the
# cluster's lib so pods on this machine reach the same address.
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

# SeaweedFS tags its releases "4.53", not "v4.53", so the module proxy serves
# them only as pseudo-versions of the release commit. This one reports 4.53
# (weed/util/version/constants.go) and needs go >= 1.26.6 (its go.mod).
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
SEAWEEDFS_RELEASE="${SEAWEEDFS_RELEASE:-4.53}"
SEAWEEDFS_MODULE="github.com/seaweedfs/seaweedfs"
SEAWEEDFS_DIR="$CACHE_ROOT/seaweedfs-$SEAWEEDFS_VERSION"
WEED_BIN="$SEAWEEDFS_DIR/bin/weed"

# Server state lives outside the repo and outside the cluster's state, so the
# tests can start the server as any user and down.sh never touches the cluster.
S3_STATE="${BATCHDRAIN_S3_STATE:-${XDG_RUNTIME_DIR:-/tmp}/batchdrain-s3-$(id -u)}"
S3_PORT="${BATCHDRAIN_S3_PORT:-18333}"
S3_MASTER_PORT="${BATCHDRAIN_S3_MASTER_PORT:-19333}"
S3_VOLUME_PORT="${BATCHDRAIN_S3_VOLUME_PORT:-18080}"
S3_FILER_PORT="${BATCHDRAIN_S3_FILER_PORT:-18888}"
S3_PID="$S3_STATE/weed.pid"
S3_LOG="$S3_STATE/weed.log"
S3_ENV="$S3_STATE/env"                # the exports up.sh prints, for scripts
# Static credentials configured on the server (test-only, loopback or node IP).
S3_ACCESS_KEY="${BATCHDRAIN_S3_ACCESS_KEY:-batchdrain}"
S3_SECRET_KEY="${BATCHDRAIN_S3_SECRET_KEY:-batchdrain-secret-key}"
S3_BUCKET="${BATCHDRAIN_S3_BUCKET:-batchdrain}"

log() { echo "[s3] $*"; }
die() { echo "[s3] ERROR: $*" >&2; exit 1; }
