#!/usr/bin/env bash
# Build Kueue (sigs.k8s.io/kueue) from its Go module into
# ~/.cache/batchdrain/kueue-<version>/bin and keep the module's own Helm chart
# (charts/kueue) beside it: module proxy from `go env GOPROXY`, checksum database
# only when configured explicitly.
#
# KUEUE_VERSION v0.17.0 needs go >= 1.25 (its go.mod); the cluster's pinned
# toolchain is go1.24, so this build uses the machine's own Go and refuses an
# older one.
#
# Idempotent: skipped when the binary and the chart are in place.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

if [[ -x "$KUEUE_BIN" && -f "$KUEUE_DIR/charts/kueue/Chart.yaml" && -f "$KUEUE_DIR/version" ]] \
  && [[ "$(cat "$KUEUE_DIR/version")" == "$KUEUE_VERSION" ]]; then
  log "kueue already at $KUEUE_VERSION ($KUEUE_BIN)"
  exit 0
fi

# shellcheck source=../cluster/go_env.sh
source "$HERE/../cluster/go_env.sh"
go_module_env
go_minor="$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
[[ -n "$go_minor" && "$go_minor" -ge 25 ]] || die "Kueue $KUEUE_VERSION needs go >= 1.25, this machine has $(go env GOVERSION)"

T0=$SECONDS
mkdir -p "$KUEUE_DIR/bin"
log "building kueue $KUEUE_VERSION with $(go env GOVERSION) -> $KUEUE_DIR/bin"
# The version the manager reports (its Makefile's ldflags).
GOBIN="$KUEUE_DIR/bin" go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
  "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION" || die "go install of kueue failed"
MODDIR="$(go env GOMODCACHE)/sigs.k8s.io/kueue@$KUEUE_VERSION"
rm -rf "$KUEUE_DIR/charts"; mkdir -p "$KUEUE_DIR/charts"
cp -r "$MODDIR/charts/kueue" "$KUEUE_DIR/charts/kueue"; chmod -R u+w "$KUEUE_DIR/charts"
echo "$KUEUE_VERSION" >"$KUEUE_DIR/version"
log "built kueue in $((SECONDS - T0))s"
