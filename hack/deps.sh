#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, skipping what is present:
# Python venv support, Postgres (integration tier), and the node side of the test
# cluster (containerd, runc, CNI plugins, iptables, debootstrap, docker for image builds),
# GNU time (peak RSS of a child process in the memory tests).
set -euo pipefail
want=(python3-venv postgresql containerd runc containernetworking-plugins iptables conntrack
      debootstrap docker.io openssl gcc libc6-dev curl ca-certificates chromium time)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "[deps] installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "[deps] all present"
fi
