#!/usr/bin/env bash
# The fault tests' cluster-control interface (see hack/cluster/control.sh) for a kind
# cluster: components run as static pods (apiserver, etcd) or systemd units (kubelet,
# containerd) inside the node containers. KIND_CLUSTER names the cluster (default "kind").
#
#   BATCHDRAIN_FAULTS_CONTROL="bash hack/kind/control.sh" make test-faults
set -euo pipefail
(($# == 2)) || { echo "usage: control.sh stop|start|restart COMPONENT" >&2; exit 2; }
verb="$1" name="$2"
node="${KIND_CLUSTER:-kind}-control-plane"
case "$name" in
  kube-apiserver|etcd)
    # Moving the static pod manifest away makes the kubelet stop the component.
    manifest="/etc/kubernetes/manifests/$name.yaml"
    case "$verb" in
      stop) docker exec "$node" sh -c "mv $manifest /etc/kubernetes/$name.yaml.stopped && \
        while crictl ps -q --name $name | grep -q .; do sleep 0.5; done" ;;
      start) docker exec "$node" sh -c "mv /etc/kubernetes/$name.yaml.stopped $manifest" ;;
      restart) "$0" stop "$name"; "$0" start "$name" ;;
      *) echo "unknown verb $verb" >&2; exit 2 ;;
    esac ;;
  kubelet|containerd)
    # Every node runs both as systemd units; the fault tests pin phases to the control plane node.
    docker exec "$node" systemctl "$verb" "$name" ;;
  *) echo "unsupported component on kind: $name" >&2; exit 2 ;;
esac
