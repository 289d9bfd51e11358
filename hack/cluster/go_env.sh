# shellcheck shell=bash
# The environment of every build of an upstream Go module here (kwok, Toxiproxy,
# Kueue, SeaweedFS). Sourced after lib.sh, not run.
#
# Module proxy and checksum database come from the machine's Go configuration
# (`go env`: environment, then `go env -w`, then go's defaults); none is named here.
# The checksum database is not reachable from these machines (the module proxy is),
# so verification is off unless GOSUMDB is configured explicitly.

# go_module_env: static binaries, go as installed (no toolchain download), the proxy
# checked to be a URL.
go_module_env() {
  command -v go >/dev/null || die "go is not installed"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-p=2 -buildvcs=false -mod=mod"
  GOPROXY="$(go env GOPROXY)"
  export GOPROXY
  GOSUMDB="$(go env -changed -json GOSUMDB 2>/dev/null | sed -n 's/^[[:space:]]*"GOSUMDB": "\(.*\)"$/\1/p')"
  export GOSUMDB="${GOSUMDB:-off}"
  [[ "$GOPROXY" =~ [a-z]+:// ]] || die "no Go module proxy configured (GOPROXY='$GOPROXY'): set one with go env -w GOPROXY=<url>"
}

# use_cluster_toolchain: put the cluster's pinned Go toolchain first on PATH (fetched and
# checked by hack/cluster/build.sh, which builds kubectl to get it when it is missing).
use_cluster_toolchain() {
  local root="$CACHE_ROOT/toolchains/$BUILD_GOTOOLCHAIN"
  [[ "$BUILD_GOTOOLCHAIN" == local ]] && return 0
  [[ -x "$root/bin/go" ]] || COMPONENTS=kubectl "$(dirname "${BASH_SOURCE[0]}")/build.sh"
  export PATH="$root/bin:$PATH" GOROOT="$root"
}
