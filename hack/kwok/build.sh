#!/usr/bin/env bash
# Build kwok (sigs.k8s.io/kwok) from its Go module into
# ~/.cache/batchdrain/kwok-<version>/bin, the way hack/cluster/build.sh builds
# the Kubernetes components: module proxy from `go env GOPROXY`, checksum
# database only when configured explicitly, the cluster's pinned Go toolchain.
#
# KWOK_VERSION v0.7.0 is pinned because it is built upstream with go1.24 and
# client-go v0.33, the same toolchain and minor version as the cluster
# (hack/cluster/lib.sh); v0.8.0 needs go1.26.
#
# Idempotent: skipped when the binary already reports the pinned version and
# the stage manifests are in place (a warm run takes well under a second).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

if [[ -x "$KWOK_BIN" && -d "$KWOK_DIR/kustomize/stage/pod/general" ]] && "$KWOK_BIN" --version 2>/dev/null | grep -qF -- "version $KWOK_VERSION "; then
  log "kwok already at $KWOK_VERSION ($KWOK_BIN)"
  exit 0
fi

command -v go >/dev/null || die "go is not installed"
# The toolchain is the cluster's: build.sh fetches and checks it (a no-op when
# the cluster binaries are already built, which up.sh needs anyway).
# shellcheck source=../cluster/go_env.sh
source "$HERE/../cluster/go_env.sh"
use_cluster_toolchain
go_module_env

T0=$SECONDS
mkdir -p "$KWOK_DIR/bin"
log "building kwok $KWOK_VERSION with $(go version | awk '{print $3}') -> $KWOK_DIR/bin"
# kwok's go.mod has no replace directives, so `go install pkg@version` works;
# pkg/consts carries the version.
GOBIN="$KWOK_DIR/bin" go install -trimpath \
  -ldflags "-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || die "go install of kwok failed"
"$KWOK_BIN" --version | grep -qF -- "version $KWOK_VERSION " || die "kwok built but does not report $KWOK_VERSION"
# The stage manifests ship in the module zip: keep a copy next to the binary.
MODDIR="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION"
rm -rf "$KWOK_DIR/kustomize"; cp -r "$MODDIR/kustomize" "$KWOK_DIR/kustomize"; chmod -R u+w "$KWOK_DIR/kustomize"
log "built kwok in $((SECONDS - T0))s"
