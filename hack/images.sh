#!/usr/bin/env bash
# Build the batchdrain image offline and load it into the cluster's containerd.
#
#  1. Base image: debootstrap Debian bookworm (minbase + python3, python3-venv,
#     ca-certificates) from the Debian mirror this machine's apt sources serve
#     bookworm from (or DEBIAN_MIRROR), cached as a rootfs tarball in
#     ~/.cache/batchdrain/images/, `docker import`ed as batchdrain-base:bookworm.
#  2. Wheelhouse: the project's dependencies (and its build backend) as wheels
#     for CPython 3.11, built on the host with the host's pip configuration
#     (its CA bundle stays on the host), into <context>/build/wheels/.
#  3. `docker build` of the repo's Dockerfile with BASE_IMAGE=the local base and
#     WHEELHOUSE=/src/wheels (pip --no-index --find-links; no network).
#  4. `docker save` to ~/.cache/batchdrain/images/load/batchdrain-dev.tar and
#     `ctr -n k8s.io images import` into the cluster's containerd when it runs
#     (hack/cluster/up.sh imports every tarball in that folder at bring-up).
#     containerd names it docker.io/library/batchdrain:dev.
#
# No Docker engine runs on these machines: if `docker info` fails, this script
# starts its own dockerd (--iptables=false --bridge=none; builds use
# --network=none) and stops it again at the end (KEEP_DOCKERD=1 keeps it).
#
# Env: IMAGE (default batchdrain:dev), CONTEXT (default repo root),
#      BASE_IMAGE (skip debootstrap and build FROM this image instead),
#      DEBIAN_MIRROR (default: from /etc/apt/sources.list{,.d/*.list,.d/*.sources}).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=hack/cluster/lib.sh
source "$HERE/cluster/lib.sh"

IMAGE="${IMAGE:-batchdrain:dev}"
CONTEXT="${CONTEXT:-$REPO_ROOT}"
LOCAL_BASE="batchdrain-base:bookworm"
BASE_INCLUDE="python3,python3-venv,ca-certificates"
BASE_TAR="$IMAGES_DIR/base-bookworm-python3.tar"
BASE_SUITE="bookworm"
PY_TARGET="3.11"   # bookworm's python3 and python:3.11-slim
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker || true)}"
DOCKERD_PIDFILE="$RUN_DIR/dockerd.pid"
DOCKERD_LOG="$CACHE_ROOT/dockerd.log"
export DOCKER_BUILDKIT=0   # Debian's dockerd 20.10 without buildx: classic builder

apt_ensure debootstrap:debootstrap dockerd:docker.io ctr:containerd
DOCKER="${DOCKER:-$(command -v docker)}"
mkdir -p "$IMAGES_DIR" "$LOAD_DIR" "$RUN_DIR"

# --- 1. base rootfs ----------------------------------------------------------
# apt_mirror SUITE: the first URI that an enabled `deb` entry of the machine's
# apt sources serves SUITE's main component from. One-line format in
# sources.list and sources.list.d/*.list, deb822 stanzas in *.sources.
apt_mirror() {
  local suite="$1" f
  local lists=() debs=()
  [[ -f /etc/apt/sources.list ]] && lists+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && lists+=("$f"); done
  for f in /etc/apt/sources.list.d/*.sources; do [[ -f "$f" ]] && debs+=("$f"); done
  {
    if ((${#lists[@]})); then
      awk -v suite="$suite" '
        { sub(/#.*/, "") }
        $1 != "deb" { next }
        { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } }
        $(i + 1) == suite { for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; next } }
      ' "${lists[@]}"
    fi
    if ((${#debs[@]})); then
      awk -v suite="$suite" '
        function flush() {
          if (types ~ "(^| )deb( |$)" && suites ~ "(^| )" suite "( |$)" && comps ~ "(^| )main( |$)" && enabled != "no") {
            split(uris, u, " "); if (u[1] != "") print u[1]
          }
          types = suites = comps = uris = enabled = ""
        }
        FNR == 1 { flush() }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        {
          key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
          if (key == "types") types = $0; else if (key == "suites") suites = $0
          else if (key == "components") comps = $0; else if (key == "uris") uris = $0
          else if (key == "enabled") enabled = tolower($0)
        }
        END { flush() }
      ' "${debs[@]}"
    fi
  } | head -n 1
}

build_base_tar() {
  if [[ -s "$BASE_TAR" ]]; then log "base rootfs cached: $BASE_TAR"; return; fi
  local mirror="${DEBIAN_MIRROR:-$(apt_mirror "$BASE_SUITE")}"
  [[ -n "$mirror" ]] || die "no Debian mirror for $BASE_SUITE in /etc/apt/sources.list{,.d/*.list,.d/*.sources}: set DEBIAN_MIRROR"
  local root="$IMAGES_DIR/rootfs.tmp"
  rm -rf "$root"
  log "debootstrap $BASE_SUITE (minbase + $BASE_INCLUDE) from $mirror (a few minutes)"
  if ! debootstrap --variant=minbase --include="$BASE_INCLUDE" "$BASE_SUITE" "$root" "$mirror" \
      >"$IMAGES_DIR/debootstrap.log" 2>&1; then
    tail -n 30 "$IMAGES_DIR/debootstrap.log" >&2
    die "debootstrap failed (log: $IMAGES_DIR/debootstrap.log)"
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/var/log/*.log
  # Any proc/sys mounts debootstrap left behind would end up in the tarball.
  umount -R "$root/proc" 2>/dev/null || true
  umount -R "$root/sys" 2>/dev/null || true
  tar --numeric-owner -C "$root" -cf "$BASE_TAR.tmp" .
  mv -f "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$root"
  log "base rootfs: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
}

# --- 2. docker engine ----------------------------------------------------------
STARTED_DOCKERD=""
stop_own_dockerd() {
  [[ -n "$STARTED_DOCKERD" && -z "${KEEP_DOCKERD:-}" ]] || return 0
  local pid; pid="$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    log "stopping the dockerd this script started (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$DOCKERD_PIDFILE"
}
ensure_dockerd() {
  if "$DOCKER" info >/dev/null 2>&1; then log "using the running Docker engine"; return; fi
  log "no Docker engine: starting dockerd (--iptables=false --bridge=none), log $DOCKERD_LOG"
  setsid nohup dockerd --iptables=false --ip-masq=false --bridge=none \
    --host unix:///var/run/docker.sock --pidfile "$DOCKERD_PIDFILE" \
    >"$DOCKERD_LOG" 2>&1 </dev/null &
  STARTED_DOCKERD=1
  trap stop_own_dockerd EXIT
  local deadline=$((SECONDS + 60))
  until "$DOCKER" info >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 30 "$DOCKERD_LOG" >&2; die "dockerd did not come up in 60s"; }
    sleep 1
  done
  log "dockerd is up"
}

import_base() {
  local sum; sum="$(stat -c '%s-%Y' "$BASE_TAR")"
  if [[ "$("$DOCKER" image inspect -f '{{index .Config.Labels "org.batchdrain.rootfs"}}' "$LOCAL_BASE" 2>/dev/null || true)" == "$sum" ]]; then
    log "$LOCAL_BASE already imported"; return
  fi
  log "docker import $BASE_TAR as $LOCAL_BASE"
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.batchdrain.rootfs=$sum" \
    --change 'CMD ["/bin/bash"]' \
    "$BASE_TAR" "$LOCAL_BASE" >/dev/null
}

# --- 3. wheelhouse -------------------------------------------------------------
# The dependencies named in pyproject.toml plus its build-system requirements,
# resolved for CPython 3.11 on x86_64 Linux. The project itself is built from
# source inside the image (pip install /src); nothing is written into the
# source tree but build/wheels/.
build_wheels() {
  local wheels="$CONTEXT/build/wheels" py reqs
  [[ -f "$CONTEXT/pyproject.toml" ]] || die "no pyproject.toml in $CONTEXT"
  py="$(command -v "python$PY_TARGET" || true)"
  reqs="$(python3 - "$CONTEXT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    data = tomllib.load(f)
reqs = list(data.get("project", {}).get("dependencies", []))
reqs += data.get("project", {}).get("optional-dependencies", {}).get("s3", [])  # the image's EXTRAS
reqs += data.get("build-system", {}).get("requires", ["setuptools", "wheel"])
print("\n".join(reqs))
PY
)"
  local key; key="$(printf '%s\n%s\n' "$PY_TARGET" "$reqs" | sha256sum | cut -d' ' -f1)"
  if [[ -f "$wheels/.key" && "$(cat "$wheels/.key")" == "$key" ]] && ls "$wheels"/*.whl >/dev/null 2>&1; then
    log "wheelhouse up to date ($wheels); delete it to refresh"
    return
  fi
  rm -rf "$wheels.tmp"; mkdir -p "$wheels.tmp"
  printf '%s\n' "$reqs" >"$wheels.tmp/requirements.txt"
  log "pip wheelhouse for Python $PY_TARGET ($(wc -l <"$wheels.tmp/requirements.txt") requirements) -> $wheels"
  if [[ -n "$py" ]] && "$py" -m pip --version >/dev/null 2>&1; then
    "$py" -m pip wheel -q --wheel-dir "$wheels.tmp" -r "$wheels.tmp/requirements.txt" \
      >"$CACHE_ROOT/pip-wheel.log" 2>&1 || { tail -n 30 "$CACHE_ROOT/pip-wheel.log" >&2; die "pip wheel failed"; }
  else
    python3 -m pip download -q --dest "$wheels.tmp" --only-binary=:all: \
      --python-version "$PY_TARGET" --implementation cp --abi "cp${PY_TARGET/./}" \
      --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
      -r "$wheels.tmp/requirements.txt" \
      >"$CACHE_ROOT/pip-wheel.log" 2>&1 || { tail -n 30 "$CACHE_ROOT/pip-wheel.log" >&2; die "pip download failed"; }
  fi
  echo "$key" >"$wheels.tmp/.key"
  rm -rf "$wheels"; mv "$wheels.tmp" "$wheels"
  log "wheelhouse: $(find "$wheels" -name '*.whl' | wc -l) wheels"
}

# --- 4. build, save, load ------------------------------------------------------
build_image() {
  local base="${BASE_IMAGE:-$LOCAL_BASE}"
  log "docker build -t $IMAGE (BASE_IMAGE=$base, offline wheelhouse)"
  if ! "$DOCKER" build --network=none \
      --build-arg "BASE_IMAGE=$base" --build-arg WHEELHOUSE=/src/wheels \
      -t "$IMAGE" -f "$REPO_ROOT/Dockerfile" "$CONTEXT" >"$CACHE_ROOT/docker-build.log" 2>&1; then
    tail -n 40 "$CACHE_ROOT/docker-build.log" >&2
    die "docker build failed (log: $CACHE_ROOT/docker-build.log)"
  fi
  log "built $IMAGE ($("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE"))"
  # The classic builder leaves the untagged builder stage behind; it is the
  # layer cache of the next build, so keep the newest and drop older ones.
  "$DOCKER" images -q --no-trunc -f dangling=true -f label=org.batchdrain.stage=builder \
    | tail -n +2 | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
}

save_and_load() {
  local tar
  tar="$LOAD_DIR/$(echo "$IMAGE" | tr '/:' '__').tar"
  "$DOCKER" save "$IMAGE" -o "$tar.tmp" && mv -f "$tar.tmp" "$tar"
  log "saved $IMAGE to $tar ($(du -h "$tar" | cut -f1))"
  if containerd_up; then
    ctr_k8s images import "$tar" >/dev/null
    log "imported into the cluster's containerd (k8s.io namespace):"
    ctr_k8s images ls -q | grep -F "${IMAGE%%:*}" | sed 's/^/[cluster]   /'
  else
    log "cluster containerd not running; hack/cluster/up.sh imports $tar at bring-up"
  fi
}

[[ -n "${BASE_IMAGE:-}" ]] || build_base_tar
ensure_dockerd
[[ -n "${BASE_IMAGE:-}" ]] || import_base
build_wheels
build_image
save_and_load
log "image $IMAGE ready (containerd name: docker.io/library/$IMAGE)"
