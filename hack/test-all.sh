#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: unit, integration (real SQLite
# files, a real Postgres and a real S3 server, SeaweedFS built from its Go module by
# hack/s3/build.sh, that the harness starts), e2e on a real single-node cluster built
# from source and torn down afterwards. When KUBECONFIG is already set (kind, or a
# cluster you started), that cluster is used and left running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $EUID -eq 0 ]] || { echo "make test needs root (it runs a cluster on this machine)"; exit 2; }
bash hack/deps.sh
make --no-print-directory venv
bash hack/tools/helm.sh
t0=$SECONDS
bash hack/s3/build.sh   # the integration tier's S3 server (tests/s3server.py starts it)
echo "[test] S3 server build step: $(( SECONDS - t0 ))s"
export PATH="$HOME/.cache/batchdrain/tools/bin:$PATH"
own_cluster=0
if [[ -z "${KUBECONFIG:-}" ]]; then
  own_cluster=1
  t0=$SECONDS
  bash hack/cluster/build.sh
  echo "[test] build step: $(( SECONDS - t0 ))s"
  t0=$SECONDS
  bash hack/images.sh
  echo "[test] images step: $(( SECONDS - t0 ))s"
  t0=$SECONDS
  bash hack/cluster/up.sh
  echo "[test] cluster up: $(( SECONDS - t0 ))s"
  export KUBECONFIG=/var/lib/batchdrain-cluster/admin.kubeconfig
  export PATH="$(bash hack/cluster/up.sh --print-bin-dir 2>/dev/null || true):$PATH"
fi
status=0
.venv/bin/python -m pytest tests -v -ra --junitxml=.batchdrain-test-report.xml || status=$?
if ((status != 0)) && ((own_cluster)); then
  bash hack/cluster/logs.sh || true
fi
if ((own_cluster)); then
  bash hack/cluster/down.sh || true
fi
exit $status
