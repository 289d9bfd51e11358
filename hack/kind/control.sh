#!/usr/bin/env bash
# The fault tests' cluster-control interface (see hack/cluster/control.sh) for a kind
# cluster: components run as static pods (apiserver) or systemd units (kubelet) inside
# the node containers. KIND_CLUSTER names the cluster (default "kind").
#
#   BATCHDRAIN_FAULTS_CONTROL="bash hack/kind/control.sh" make test-faults
set -euo pipefail
(($# == 2)) || { echo "usage: control.sh stop|start|restart COMPONENT" >&2; exit 2; }
verb="$1" name="$2"
node="${KIND_CLUSTER:-kind}-control-plane"
case "$name" in
  kube-apiserver)
    # Moving the static pod manifest away makes the kubelet stop the apiserver.
    manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
    case "$verb" in
      stop) docker exec "$node" sh -c "mv $manifest /etc/kubernetes/kube-apiserver.yaml.stopped && \
        while crictl ps -q --name kube-apiserver | grep -q .; do sleep 0.5; done" ;;
      start) docker exec "$node" sh -c "mv /etc/kubernetes/kube-apiserver.yaml.stopped $manifest" ;;
      restart) "$0" stop "$name"; "$0" start "$name" ;;
      *) echo "unknown verb $verb" >&2; exit 2 ;;
    esac ;;
  kubelet)
    # Every node runs a kubelet; the fault tests pin phases to the control plane node.
    docker exec "$node" systemctl "$verb" kubelet ;;
  *) echo "unsupported component on kind: $name" >&2; exit 2 ;;
esac
