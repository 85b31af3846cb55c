# syntax=docker/dockerfile:1.7
#
# drift-detector: one image for `detector run` (the sidecar), `detector route` (the router),
# `detector console` (the review page) and `detector audit verify` (the daily check of the
# audit log). The arguments are passed to `detector`:
#
#   docker build -t drift-detector:0.1.0 .
#   docker run --rm drift-detector:0.1.0 run --config /etc/drift-detector/detector.yaml
#   docker run --rm drift-detector:0.1.0 route --config /etc/drift-detector/router.yaml
#
# Two stages. The build stage is the full Debian Python image, which has gcc and the
# Python headers: `pip wheel .` compiles the Cython hot path there (setup.py) and collects
# every dependency as a wheel. The runtime stage is the slim image with no compiler: it
# installs those wheels only (--no-index), runs as an unprivileged user and works on a
# read-only root filesystem (nothing is written but to a mounted /tmp, if at all).
# Checked by tests/deploy/test_dockerfile.py (hadolint and the rules listed there).

ARG PYTHON_VERSION=3.11.11
ARG DEBIAN_RELEASE=bookworm

# --- build: compiler, headers, Cython ----------------------------------------------------------
FROM python:${PYTHON_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml setup.py README.md ./
COPY detector ./detector
# The project's wheel (with the compiled extension) and all its dependencies' wheels.
RUN pip wheel --wheel-dir /wheels .

# --- runtime: slim, non-root, no compiler ------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

# The project version (pyproject.toml); the wheel installed is pinned to it.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
# Set to the repository URL at build time (--build-arg SOURCE=...).
ARG SOURCE=https://example.invalid/drift-detector
# OCI image spec annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
LABEL org.opencontainers.image.title="drift-detector" \
      org.opencontainers.image.description="Streaming drift detection sidecar for ML models on Kafka: detector run, detector route, detector console, detector audit verify" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DETECTOR_HTTP_PORT=8080 \
    DETECTOR_ROUTER_HTTP_PORT=8081 \
    DETECTOR_LOG_FORMAT=json \
    DETECTOR_ROUTER_LOG_FORMAT=json

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 detector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin detector

# Wheels only, from the build stage; the wheel directory is not left in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "drift-detector==${VERSION}" \
    && python -c "import detector.core.engine"

COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/detector-healthcheck

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081

# GET /healthz of whichever command runs (run: 8080, route: 8081; see the script).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/detector-healthcheck"]

ENTRYPOINT ["detector"]
CMD ["run"]
