#!/usr/bin/env bash
# Uninstall Kueue from the test cluster (hack/kueue/up.sh installed it): its webhooks
# would otherwise sit in front of every Job the other tests create.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_ADMIN}"
export PATH="$BIN_DIR:$HOME/.cache/batchdrain/tools/bin:$PATH"
helm uninstall kueue --namespace "$KUEUE_NAMESPACE" --wait --timeout 2m >/dev/null 2>&1 || true
# helm keeps CRDs of templates/crd? This chart templates them, so they go with the release;
# delete what is left either way, so a fresh up.sh starts clean.
kubectl get crd -o name | grep '\.kueue\.x-k8s\.io$' | xargs -r kubectl delete --wait=true >/dev/null || true
kubectl delete namespace "$KUEUE_NAMESPACE" --ignore-not-found --wait=true >/dev/null
log "Kueue removed"
