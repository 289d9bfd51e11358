#!/usr/bin/env bash
# Build Toxiproxy (github.com/Shopify/toxiproxy/v2: cmd/server and cmd/cli)
# from its Go module into ~/.cache/batchdrain/toxiproxy-<version>/bin, the way
# hack/kwok/build.sh builds kwok: module proxy from `go env GOPROXY`, checksum
# database only when configured explicitly, the cluster's pinned Go toolchain.
#
# The fault tests (tests/faults/test_silent_connections.py,
# tests/integration/test_silent_postgres.py) put this TCP proxy between the
# controller and the API server or Postgres, on loopback only, and black-hole
# it with the `timeout` toxic (timeout=0: every byte is dropped, nothing is
# closed while the toxic is in place).
#
# TOXIPROXY_VERSION v2.12.0 is pinned: its go.mod needs go1.23, which the
# cluster's go1.24 toolchain satisfies, and it has no replace directives, so
# `go install pkg@version` works.
#
# Idempotent: skipped when both binaries already report the pinned version.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

have() { [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -qF -- "${TOXIPROXY_VERSION#v}"; }
if have "$TOXIPROXY_SERVER" && have "$TOXIPROXY_CLI"; then
  log "toxiproxy already at $TOXIPROXY_VERSION ($TOXIPROXY_DIR/bin)"
  exit 0
fi

command -v go >/dev/null || die "go is not installed"
# The toolchain is the cluster's: build.sh fetches and checks it.
# shellcheck source=../cluster/go_env.sh
source "$HERE/../cluster/go_env.sh"
use_cluster_toolchain
go_module_env

T0=$SECONDS
mkdir -p "$TOXIPROXY_DIR/bin"
log "building toxiproxy $TOXIPROXY_VERSION with $(go version | awk '{print $3}') -> $TOXIPROXY_DIR/bin"
MOD="github.com/Shopify/toxiproxy/v2"
# The version string lives in the module's root package (version.go: "git"
# unless set at link time, as upstream's release build does).
LDFLAGS="-s -w -X $MOD.Version=${TOXIPROXY_VERSION#v}"
GOBIN="$TOXIPROXY_DIR/bin" go install -trimpath -ldflags "$LDFLAGS" \
  "$MOD/cmd/server@$TOXIPROXY_VERSION" "$MOD/cmd/cli@$TOXIPROXY_VERSION" \
  || die "go install of toxiproxy failed"
# go install names the binaries after their directories (server, cli).
mv -f "$TOXIPROXY_DIR/bin/server" "$TOXIPROXY_SERVER"
mv -f "$TOXIPROXY_DIR/bin/cli" "$TOXIPROXY_CLI"
have "$TOXIPROXY_SERVER" || die "toxiproxy-server built but does not report $TOXIPROXY_VERSION"
have "$TOXIPROXY_CLI" || die "toxiproxy-cli built but does not report $TOXIPROXY_VERSION"
log "built toxiproxy in $((SECONDS - T0))s"
