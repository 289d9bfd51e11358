#!/usr/bin/env bash
# Build helm v3 from its Go module into ~/.cache/batchdrain/tools/bin/helm.
#
# Why from source: these machines have Go and a module proxy but no release
# downloads; building from the module keeps the version pinned and the sources
# verified against go.sum and the checksum database.
#
# Done the way helm's own Makefile does it: CGO off, -trimpath, the version and
# the default Kubernetes version (client-go minor, major + 1) stamped in with -X.
# Without the latter, `helm template`/`helm lint` assume Kubernetes v1.20.
# The build is skipped when the stamp file matches. It runs with -p=1 under
# `nice` because other builds (Kubernetes) share the two cores.
#
# Usage: bash hack/tools/helm.sh                      # build if needed
#        HELM_VERSION=v3.21.4 bash hack/tools/helm.sh
#        HELM_GOTOOLCHAIN=go1.25.5 bash hack/tools/helm.sh   # if the local Go is refused
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
TOOLS_DIR="${BATCHDRAIN_TOOLS_DIR:-$HOME/.cache/batchdrain/tools}"
BIN_DIR="$TOOLS_DIR/bin"
HELM_BIN="$BIN_DIR/helm"
STAMP="$BIN_DIR/.helm.stamp"
MODULE="helm.sh/helm/v3"

command -v go >/dev/null || { echo "go is required to build helm" >&2; exit 1; }
mkdir -p "$BIN_DIR"

if [[ -x "$HELM_BIN" && -f "$STAMP" ]] && grep -qx "$MODULE@$HELM_VERSION" "$STAMP" \
   && "$HELM_BIN" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
    echo "helm $HELM_VERSION already at $HELM_BIN"
    exit 0
fi

# Fetch the module (verified by the checksum database) to read its dependencies.
src="$(go mod download -json "$MODULE@$HELM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || { echo "could not download $MODULE@$HELM_VERSION" >&2; exit 1; }
client_go="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' "$src/go.mod" | head -n 1)"
read -r cg_major cg_minor <<<"$client_go"
k8s_major="$((cg_major + 1))"
k8s_minor="$cg_minor"

ldflags=(
    -w -s
    -X "$MODULE/internal/version.version=$HELM_VERSION"
    -X "$MODULE/internal/version.gitTreeState=clean"
    -X "$MODULE/pkg/lint/rules.k8sVersionMajor=$k8s_major"
    -X "$MODULE/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
    -X "$MODULE/pkg/chartutil.k8sVersionMajor=$k8s_major"
    -X "$MODULE/pkg/chartutil.k8sVersionMinor=$k8s_minor"
)

build() {
    # `go install pkg@version` builds in module mode with helm's own go.mod/go.sum.
    env CGO_ENABLED=0 GOBIN="$BIN_DIR" GOFLAGS="-p=1 -buildvcs=false" "$@" \
        nice -n 10 go install -trimpath -ldflags "${ldflags[*]}" "$MODULE/cmd/helm@$HELM_VERSION"
}

# The installed Go may be newer than helm's dependencies accept; fall back to an
# older toolchain (fetched by the go command itself from the module proxy).
if ! build; then
    echo "build with $(go version) failed; retrying with GOTOOLCHAIN=${HELM_GOTOOLCHAIN:-go1.25.5}" >&2
    build GOTOOLCHAIN="${HELM_GOTOOLCHAIN:-go1.25.5}"
fi

echo "$MODULE@$HELM_VERSION" > "$STAMP"
"$HELM_BIN" version
echo "default Kubernetes version: v$k8s_major.$k8s_minor"
