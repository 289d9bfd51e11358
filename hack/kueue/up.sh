#!/usr/bin/env bash
# Deploy Kueue on the running test cluster from its own Helm chart (the Go module's
# charts/kueue), with an image built here: the static manager binary from build.sh
# in a one-layer OCI archive imported into the cluster's containerd (no registry, no
# Docker engine). Idempotent; waits until the webhook answers.
#
#   sudo bash hack/kueue/up.sh      (KUBECONFIG defaults to the test cluster's)
#   sudo bash hack/kueue/down.sh    uninstalls it again (CRDs too)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
[[ $EUID -eq 0 ]] || die "run as root"
export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_ADMIN}"
export PATH="$BIN_DIR:$HOME/.cache/batchdrain/tools/bin:$PATH"
bash "$HERE/build.sh"
bash "$HERE/../tools/helm.sh" >/dev/null

# --- the image ----------------------------------------------------------------
if [[ ! -s "$KUEUE_TAR" || "$KUEUE_TAR" -ot "$KUEUE_BIN" || "$KUEUE_TAR" -ot "$HERE/oci_archive.py" ]]; then
  log "image $KUEUE_IMAGE -> $KUEUE_TAR"
  mkdir -p "$LOAD_DIR"
  # Over the offline base image's rootfs (hack/images.sh makes it; make test runs that
  # first); the binary alone where it was never made (a kind cluster of your own).
  base=()
  if [[ -s "$IMAGES_DIR/base-bookworm-python3.tar" ]]; then
    base=(--base-rootfs "$IMAGES_DIR/base-bookworm-python3.tar")
  else
    log "no offline base rootfs in $IMAGES_DIR (bash hack/images.sh makes it): the image is the binary alone"
  fi
  python3 "$HERE/oci_archive.py" --binary "$KUEUE_BIN" --path /manager --user 65532:65532 \
    --name "$KUEUE_IMAGE" --output "$KUEUE_TAR" "${base[@]}"
fi
context="$(kubectl config current-context 2>/dev/null || true)"
if [[ "$context" == kind-* ]] && command -v kind >/dev/null; then
  # A kind cluster: its nodes' containerd is inside their containers.
  kind load image-archive "$KUEUE_TAR" --name "${context#kind-}" >/dev/null
  log "loaded $KUEUE_IMAGE into kind cluster ${context#kind-}"
elif ! ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep -qxF "$KUEUE_IMAGE"; then
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$KUEUE_TAR" >/dev/null
  log "imported $KUEUE_IMAGE into the cluster's containerd"
fi

# --- the chart ------------------------------------------------------------------
helm upgrade --install kueue "$KUEUE_DIR/charts/kueue" --namespace "$KUEUE_NAMESPACE" --create-namespace \
  -f "$HERE/values.yaml" --wait --timeout 5m >/dev/null
kubectl -n "$KUEUE_NAMESPACE" rollout status deployment/kueue-controller-manager --timeout=300s >/dev/null
# The webhook is ready when a dry-run of a ResourceFlavor passes through it.
deadline=$((SECONDS + 180))
until kubectl create --dry-run=server -f - >/dev/null 2>&1 <<'YAML'
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {name: batchdrain-webhook-probe}
YAML
do
  ((SECONDS < deadline)) || die "Kueue's webhook did not answer within 180s (kubectl -n $KUEUE_NAMESPACE logs deploy/kueue-controller-manager)"
  sleep 2
done
log "Kueue $KUEUE_VERSION ready in namespace $KUEUE_NAMESPACE"
