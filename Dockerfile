# batchdrain container image.
#
# Multi-stage: the builder creates a virtualenv at /opt/venv and installs the
# project into it; the runtime stage, FROM the same base, copies only that venv
# and runs as a non-root user. No dev extras, no compilers, no build caches.
#
# Users with internet:
#   docker build -t batchdrain:dev .
# Offline (this project's CI, see hack/images.sh): a local Debian base with
# python3 and a wheelhouse that hack/images.sh builds on the host in
# build/wheels/ (gitignored):
#   docker build --build-arg BASE_IMAGE=batchdrain-base:bookworm \
#                --build-arg WHEELHOUSE=/src/wheels -t batchdrain:dev .
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module:
# python:3.11-slim, or Debian bookworm + python3-venv.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
LABEL org.batchdrain.stage=builder
# Empty: install from the package index. A directory (e.g. /src/wheels): install
# with --no-index --find-links from it, no network needed.
ARG WHEELHOUSE=""
# Optional extras baked in: s3 (s3fs) so the chart's s3:// log store works; "" for none.
ARG EXTRAS="s3"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
# Dependencies first, in their own layer: it is rebuilt only when
# pyproject.toml or the wheelhouse changes, not on every source edit.
# `build*` copies the contents of build/ (wheels/) when it exists and nothing
# otherwise; .dockerignore admits only build/wheels/ from it.
COPY pyproject.toml build* /src/
RUN set -eu; \
    if [ -n "$WHEELHOUSE" ]; then set -- --no-index --find-links "$WHEELHOUSE"; fi; \
    python3 -c 'import sys, tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + [r for e in sys.argv[1].split(",") if e for r in p["optional-dependencies"][e]]))' "$EXTRAS" \
      > /tmp/requirements.txt; \
    /opt/venv/bin/pip install "$@" -r /tmp/requirements.txt
# Then the project itself (.dockerignore admits pyproject.toml, README.md,
# LICENSE and controller/).
COPY . /src
RUN set -eu; \
    if [ -n "$WHEELHOUSE" ]; then set -- --no-index --find-links "$WHEELHOUSE"; fi; \
    /opt/venv/bin/pip install "$@" "/src${EXTRAS:+[$EXTRAS]}"; \
    /opt/venv/bin/python -c "import batchdrain"

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="batchdrain" \
      org.opencontainers.image.description="Kubernetes batch drain controller" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 batchdrain \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home \
            --home-dir /home/batchdrain --shell /usr/sbin/nologin batchdrain
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUTF8=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/batchdrain
USER 10001:10001
ENTRYPOINT ["batchdrain"]
CMD ["--help"]
