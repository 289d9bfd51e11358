#!/usr/bin/env bash
# Build the upstream Kubernetes components and etcd from their Go modules into
# ~/.cache/batchdrain/k8s-<version>/bin (see shared/docs/CLUSTER.md).
#
# Each binary is built in a local Go module that requires k8s.io/kubernetes at
# K8S_VERSION and replaces every staging module with its published v0.X.Y
# (upstream's go.mod points them at ./staging, which does not exist in the
# module zip). etcd is built from go.etcd.io/etcd/server/v3 as a dependency of
# a second local module (`go install pkg@v` refuses modules with replaces).
#
# Idempotent: a binary whose `--version` already reports the pinned version is
# skipped, so a warm run takes a second. One binary is built at a time (2 cores,
# ~2 GiB RSS per link).
#
# Environment knobs:
#   BATCHDRAIN_CACHE   cache root (default ~/.cache/batchdrain)
#   BUILD_GOTOOLCHAIN  Go toolchain used for the build (pinned in lib.sh;
#                      Kubernetes 1.33 is built upstream with go1.24; "local"
#                      uses the installed go)
#   COMPONENTS         space-separated subset to build (default: all)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"   # pinned K8S_VERSION, ETCD_VERSION, BUILD_GOTOOLCHAIN, paths

# sha256 of golang.org/toolchain@v0.0.1-go1.24.13.linux-amd64.zip as served by
# the module proxy (recorded on first download: the checksum database is
# unreachable here, so `GOTOOLCHAIN=go1.24.13` refuses to fetch it by itself).
GO_TOOLCHAIN_ZIP_SHA256="${GO_TOOLCHAIN_ZIP_SHA256:-d2b048367a3d1a748b87f756fa06df12ce3b419e1d5f2a3612acb8950d615f9f}"

STAGING_VERSION="v0.${K8S_VERSION#v1.}"
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
SRC_DIR="$K8S_DIR/src/kubernetes"
ETCD_SRC_DIR="$K8S_DIR/src/etcd"
COMPONENTS="${COMPONENTS:-etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl}"

STAGING_MODULES=(
  api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base
  component-helpers controller-manager cri-api cri-client csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
  kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin
  sample-controller
)

command -v go >/dev/null || die "go is not installed"

# go_proxy_url: the first proxy URL in GOPROXY (`go env GOPROXY`, which also
# honours the environment and `go env -w`), skipping `direct` and `off`.
go_proxy_url() {
  local entry entries
  IFS=',|' read -ra entries <<<"$GOPROXY"
  for entry in "${entries[@]}"; do
    [[ -z "$entry" || "$entry" == direct || "$entry" == off ]] && continue
    echo "$entry"; return 0
  done
  return 1
}

# install_toolchain: fetch the pinned Go toolchain from the module proxy into
# the cache and put it first on PATH. The go command's own GOTOOLCHAIN download
# insists on verifying the toolchain against the checksum database, which these
# machines cannot reach, so we fetch the same module zip and check its sha256.
install_toolchain() {
  [[ "$BUILD_GOTOOLCHAIN" == local ]] && return 0
  local arch; arch="$(go env GOHOSTARCH)"
  local root="$CACHE_ROOT/toolchains/$BUILD_GOTOOLCHAIN"
  if [[ ! -x "$root/bin/go" ]] || ! "$root/bin/go" version 2>/dev/null | grep -qw "$BUILD_GOTOOLCHAIN"; then
    local mod="v0.0.1-$BUILD_GOTOOLCHAIN.linux-$arch"
    local proxy; proxy="$(go_proxy_url)"
    local tmp; tmp="$(mktemp -d)"
    log "fetching Go toolchain $BUILD_GOTOOLCHAIN from $proxy"
    curl -sSfL --retry 3 -o "$tmp/tc.zip" "$proxy/golang.org/toolchain/@v/$mod.zip" || die "toolchain download failed"
    if [[ "$BUILD_GOTOOLCHAIN" == go1.24.13 && "$arch" == amd64 ]]; then
      echo "$GO_TOOLCHAIN_ZIP_SHA256  $tmp/tc.zip" | sha256sum -c --quiet - || die "toolchain zip checksum mismatch"
    fi
    (cd "$tmp" && unzip -q tc.zip) || die "unzip of toolchain failed"
    rm -rf "$root"; mkdir -p "$(dirname "$root")"
    mv "$tmp/golang.org/toolchain@$mod" "$root"
    chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
    rm -rf "$tmp"
  fi
  export PATH="$root/bin:$PATH"
  export GOROOT="$root"
}
GO_READY=""
ensure_go() {
  [[ -n "$GO_READY" ]] && return 0
  go_proxy_url >/dev/null || die "no Go module proxy configured (GOPROXY='$GOPROXY'): set one with go env -w GOPROXY=<url>"
  install_toolchain
  export GOTOOLCHAIN=local
  log "using $(go version)"
  GO_READY=1
}
export CGO_ENABLED=0
export GOFLAGS="-p=2 -buildvcs=false -mod=mod"
# Module proxy and checksum database come from the machine's Go configuration
# (`go env`: environment, then `go env -w`, then go's defaults); none is named
# here. The checksum database is not reachable from these machines (the module
# proxy is), so verification is off unless GOSUMDB is configured explicitly;
# GONOSUMDB/GONOSUMCHECK/GOPRIVATE are read by go itself.
GOPROXY="$(go env GOPROXY)"
export GOPROXY
GOSUMDB="$(go env -changed -json GOSUMDB 2>/dev/null | sed -n 's/^[[:space:]]*"GOSUMDB": "\(.*\)"$/\1/p')"
export GOSUMDB="${GOSUMDB:-off}"

mkdir -p "$BIN_DIR" "$SRC_DIR" "$ETCD_SRC_DIR"

# have_version BIN EXPECTED -> 0 when BIN exists and reports EXPECTED
have_version() {
  local bin="$1" expected="$2" out
  [[ -x "$BIN_DIR/$bin" ]] || return 1
  case "$bin" in
    kubectl) out="$("$BIN_DIR/$bin" version --client 2>/dev/null || true)" ;;
    *)       out="$("$BIN_DIR/$bin" --version 2>/dev/null || true)" ;;
  esac
  grep -qw -- "$expected" <<<"$out"
}

setup_k8s_module() {
  [[ -f "$SRC_DIR/.ready-$K8S_VERSION" ]] && return 0
  log "preparing Go module for k8s.io/kubernetes $K8S_VERSION (staging $STAGING_VERSION) in $SRC_DIR"
  {
    echo "module batchdrain.local/k8sbuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in "${STAGING_MODULES[@]}"; do
      echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"
    done
    echo ")"
  } >"$SRC_DIR/go.mod"
  cat >"$SRC_DIR/tools.go" <<'GO'
//go:build tools

// Package tools pins the Kubernetes commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  rm -f "$SRC_DIR/go.sum"
  log "go mod tidy (downloads modules; a missing staging replace shows as 'unknown revision v0.0.0')"
  (cd "$SRC_DIR" && go mod tidy 2>&1 | tail -n 30) || die "go mod tidy failed for kubernetes"
  (cd "$SRC_DIR" && go list -deps k8s.io/kubernetes/cmd/kubectl >/dev/null) || die "module graph broken"
  touch "$SRC_DIR/.ready-$K8S_VERSION"
}

setup_etcd_module() {
  [[ -f "$ETCD_SRC_DIR/.ready-$ETCD_VERSION" ]] && return 0
  log "preparing Go module for go.etcd.io/etcd/server/v3 $ETCD_VERSION in $ETCD_SRC_DIR"
  cat >"$ETCD_SRC_DIR/go.mod" <<GOMOD
module batchdrain.local/etcdbuild

go 1.23

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$ETCD_SRC_DIR/tools.go" <<'GO'
//go:build tools

// Package tools pins the etcd server command this module builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  rm -f "$ETCD_SRC_DIR/go.sum"
  (cd "$ETCD_SRC_DIR" && go mod tidy 2>&1 | tail -n 30) || die "go mod tidy failed for etcd"
  touch "$ETCD_SRC_DIR/.ready-$ETCD_VERSION"
}

k8s_ldflags() {
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local f="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date -X $pkg.gitCommit=batchdrain-gomod"
  done
  echo "$f"
}

build_one() {
  local name="$1" start end
  start=$(date +%s)
  ensure_go
  if [[ "$name" == etcd ]]; then
    setup_etcd_module
    log "building etcd $ETCD_VERSION"
    (cd "$ETCD_SRC_DIR" && go build -trimpath \
        -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=batchdrain-gomod" \
        -o "$BIN_DIR/.etcd.tmp" go.etcd.io/etcd/server/v3) || die "go build of etcd failed"
    mv -f "$BIN_DIR/.etcd.tmp" "$BIN_DIR/etcd"
  else
    setup_k8s_module
    log "building $name $K8S_VERSION"
    (cd "$SRC_DIR" && go build -trimpath -ldflags "$(k8s_ldflags)" \
        -o "$BIN_DIR/.$name.tmp" "k8s.io/kubernetes/cmd/$name") || die "go build of $name failed"
    mv -f "$BIN_DIR/.$name.tmp" "$BIN_DIR/$name"
  fi
  end=$(date +%s)
  log "built $name in $((end - start))s"
}

total_start=$(date +%s)
log "Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, toolchain $BUILD_GOTOOLCHAIN -> $BIN_DIR"
for c in $COMPONENTS; do
  if [[ "$c" == etcd ]]; then want="${ETCD_VERSION#v}"; else want="$K8S_VERSION"; fi
  if have_version "$c" "$want"; then
    log "$c already at $want, skipping"
    continue
  fi
  build_one "$c"
  have_version "$c" "$want" || die "$c built but does not report version $want"
done
log "all binaries ready in $BIN_DIR ($(( $(date +%s) - total_start ))s)"
