# batchdrain container image.
#
# Multi-stage: the builder creates a virtualenv at /opt/venv and installs the
# project into it; the runtime stage, FROM the same base, copies only that venv
# and runs as a non-root user. No dev extras, no compilers, no build caches.
#
# Users with internet:
#   docker build -t batchdrain:dev .
# Offline (this project's CI, see hack/images.sh): a local Debian base with
# python3 and a wheelhouse built on the host inside the build context:
#   docker build --build-arg BASE_IMAGE=batchdrain-base:bookworm \
#                --build-arg WHEELHOUSE=/src/build/wheels -t batchdrain:dev .
# BASE_IMAGE must provide `python3` with the venv module (python:3.11-slim or
# Debian bookworm + python3-venv).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
# Empty: install from the package index. A path inside the context (e.g.
# /src/build/wheels): install with --no-index --find-links from it.
ARG WHEELHOUSE=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
# .dockerignore admits only pyproject.toml, README.md, LICENSE, controller/
# and build/wheels/ (when present), so this layer changes only with them.
COPY . /src
RUN set -eu; \
    if [ -n "$WHEELHOUSE" ]; then set -- --no-index --find-links "$WHEELHOUSE"; fi; \
    /opt/venv/bin/pip install "$@" /src; \
    /opt/venv/bin/python -c "import batchdrain"

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="batchdrain" \
      org.opencontainers.image.description="Kubernetes batch drain controller" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 batchdrain \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/batchdrain \
            --create-home --shell /usr/sbin/nologin batchdrain
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUTF8=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/batchdrain
USER 10001:10001
ENTRYPOINT ["batchdrain"]
CMD ["--help"]
