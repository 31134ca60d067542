# relay's container image. The base is a build argument so that CI, which reaches no image registry, can build
# on a Debian bookworm base it made itself (deploy/container/make-base-image.sh); any Python 3.11+ image with
# `python3 -m venv` works (python:3.11-slim keeps python in /usr/local/bin, Debian's in /usr/bin: the venv
# hides the difference).
ARG BASE_IMAGE=python:3.11-slim

# Build stage: the wheel, then a venv with the locked dependencies (hashes checked) and the wheel on top.
# pip and the setuptools that python3 -m venv adds (66 on bookworm, flagged by scanners) leave it at the end:
# relay needs neither at run time.
FROM ${BASE_IMAGE} AS build
# A CA bundle for pip, where the build reaches PyPI through a TLS proxy (CI mounts the host's: see docs/kubernetes.md).
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/relay-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# Runtime stage: the base, the venv, routes.yaml, and a user that is not root.
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RELAY_HOST=0.0.0.0 RELAY_PORT=8080 RELAY_ROUTES=/app/routes.yaml \
    RELAY_DATABASE_URL=sqlite:////data/relay.db RELAY_LOG_FORMAT=json
RUN groupadd --gid 10001 relay \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin relay \
    && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY routes.yaml ./

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# RELAY_WEBHOOK_TOKEN must be set: relay refuses a non-loopback address without one.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('RELAY_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
CMD ["relay", "serve"]
