#!/usr/bin/env bash
# Start a real S3 server for the tests: SeaweedFS (`weed server -s3`, built by
# build.sh) with one master, one volume server, a filer and the S3 gateway, all
# in one host process, data under $S3_STATE, static credentials from an
# s3.config written here, one bucket created.
#
# Where it listens:
#   default        127.0.0.1 (only this machine)
#   --for-pods     the node's address (node_ip in hack/cluster/lib.sh, the
#                  InternalIP the cluster's components use): the host and the
#                  pods of this machine's cluster reach it; static credentials
#                  guard it from anything else on that network
#   S3_BIND=<ip>   any other address
# Ports: BATCHDRAIN_S3_PORT (18333, the S3 API) and the MASTER/VOLUME/FILER
# ports of lib.sh; gRPC ports are each +10000. Telemetry is off.
#
# Re-runnable: a server already running from $S3_STATE is stopped first. Prints
# the exports a client needs (also written to $S3_STATE/env).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

bind="${S3_BIND:-127.0.0.1}"
if [[ "${1:-}" == --for-pods ]]; then
  bind="$(node_ip)"
  [[ -n "$bind" ]] || die "no node address found (set NODE_IP)"
fi

"$HERE/build.sh"
"$HERE/down.sh" >/dev/null
mkdir -p "$S3_STATE/data"
chmod 700 "$S3_STATE"
cat >"$S3_STATE/s3.json" <<JSON
{"identities": [{"name": "batchdrain",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
chmod 600 "$S3_STATE/s3.json"

T0=$SECONDS
# setsid: the server outlives this script (and a test fixture's process group).
setsid "$WEED_BIN" server -ip="$bind" -ip.bind="$bind" -dir="$S3_STATE/data" \
  -master.port="$S3_MASTER_PORT" -master.port.grpc="$((S3_MASTER_PORT + 10000))" \
  -master.volumeSizeLimitMB=256 -master.telemetry=false \
  -volume.port="$S3_VOLUME_PORT" -volume.port.grpc="$((S3_VOLUME_PORT + 10000))" -volume.max=100 \
  -filer -filer.port="$S3_FILER_PORT" -filer.port.grpc="$((S3_FILER_PORT + 10000))" \
  -s3 -s3.port="$S3_PORT" -s3.port.grpc="$((S3_PORT + 10000))" -s3.config="$S3_STATE/s3.json" \
  >"$S3_LOG" 2>&1 </dev/null &
echo $! >"$S3_PID"

endpoint="http://$bind:$S3_PORT"
export AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" AWS_DEFAULT_REGION=us-east-1
# Ready = the S3 gateway answers and the bucket can be created and written: the
# gateway comes up before the filer has a volume to write to.
deadline=$((SECONDS + ${S3_START_TIMEOUT:-120}))
until python3 "$HERE/ready.py" "$endpoint" "$S3_BUCKET" 2>"$S3_STATE/ready.err"; do
  kill -0 "$(cat "$S3_PID")" 2>/dev/null || { tail -n 30 "$S3_LOG" >&2; die "weed exited during start-up (log: $S3_LOG)"; }
  ((SECONDS < deadline)) || { tail -n 5 "$S3_STATE/ready.err" >&2; tail -n 30 "$S3_LOG" >&2; die "S3 gateway not ready at $endpoint after ${S3_START_TIMEOUT:-120}s"; }
  sleep 0.5
done
cat >"$S3_ENV" <<ENV
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1
export BATCHDRAIN_S3_ENDPOINT=$endpoint
export BATCHDRAIN_S3_BUCKET=$S3_BUCKET
ENV
log "weed $SEAWEEDFS_RELEASE S3 gateway ready at $endpoint, bucket $S3_BUCKET, in $((SECONDS - T0))s (pid $(cat "$S3_PID"), log $S3_LOG)"
cat "$S3_ENV"
