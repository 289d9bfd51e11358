#!/usr/bin/env bash
# Build SeaweedFS's `weed` command (github.com/seaweedfs/seaweedfs) from its Go
# module into ~/.cache/batchdrain/seaweedfs-<version>/bin/weed, the way
# hack/kwok/build.sh builds kwok: module proxy from `go env GOPROXY`, checksum
# database only when configured explicitly, nothing written into the repo.
#
# SeaweedFS's go.mod has a replace directive, which `go install pkg@version`
# refuses, so the module zip is copied into the cache and built in place with
# its own go.mod and go.sum (-mod=readonly: every dependency pinned upstream).
# The installed go builds it (SeaweedFS needs a newer Go than the cluster's
# pinned toolchain).
#
# Idempotent: skipped when the binary reports the pinned release.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

if [[ -x "$WEED_BIN" ]] && "$WEED_BIN" version 2>/dev/null | grep -qF -- " $SEAWEEDFS_RELEASE "; then
  log "weed already at $SEAWEEDFS_RELEASE ($WEED_BIN)"
  exit 0
fi

# shellcheck source=../cluster/go_env.sh
source "$HERE/../cluster/go_env.sh"
go_module_env

T0=$SECONDS
src="$(GOFLAGS=-mod=mod go mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || die "could not download $SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION"
need="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$src/go.mod")"
have="$(go env GOVERSION)"; have="${have#go}"
[[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" == "$need" ]] \
  || die "SeaweedFS $SEAWEEDFS_RELEASE needs go >= $need, the installed go is $have"

build_dir="$SEAWEEDFS_DIR/src"
rm -rf "$build_dir"; mkdir -p "$build_dir" "$SEAWEEDFS_DIR/bin"
cp -r "$src/." "$build_dir/"; chmod -R u+w "$build_dir"
log "building weed $SEAWEEDFS_RELEASE ($SEAWEEDFS_VERSION) with go $have -> $SEAWEEDFS_DIR/bin"
# -p=2: the machine has two cores shared with other builds; nice keeps the
# tests and the cluster responsive while the ~1,000 packages compile.
(cd "$build_dir" && GOFLAGS="-p=2 -buildvcs=false -mod=readonly" nice -n 10 go build -trimpath \
    -ldflags "-s -w -X $SEAWEEDFS_MODULE/weed/util/version.COMMIT=${SEAWEEDFS_VERSION##*-}" \
    -o "$SEAWEEDFS_DIR/bin/.weed.tmp" ./weed) || die "go build of weed failed"
mv -f "$SEAWEEDFS_DIR/bin/.weed.tmp" "$WEED_BIN"
rm -rf "$build_dir"   # 150 MB of sources; the module cache keeps the zip
"$WEED_BIN" version | grep -qF -- " $SEAWEEDFS_RELEASE " || die "weed built but does not report $SEAWEEDFS_RELEASE"
log "built weed in $((SECONDS - T0))s"
