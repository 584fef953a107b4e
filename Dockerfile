# One image for every role, chosen by command (the same commands the topology test runs,
# tests/deploy_support.py ROLES):
#   code server  dagster code-server start -h 0.0.0.0 -p 4000 -m glisk_pipeline.definitions -a defs
#   webserver    dagster-webserver -h 0.0.0.0 -p 3000 -w deploy/workspace.yaml
#   daemon       dagster-daemon run -w deploy/workspace.yaml
#   sidecar      python -m webhook_service                 (the default command)
#   migrations   python -m glisk_pipeline.db.migrate upgrade
#   CLI          glisk COMMAND ...  (the operator command)
#   exporter     glisk exporter --host 0.0.0.0 --port 9464  (Prometheus: deploy/monitoring/)
# Dependencies come from uv.lock (`uv sync --frozen`): what was tested is what ships.

# The base is Debian bookworm's slim image with Debian's own Python 3.11 (python3, python3-venv),
# not the python:3.11 image (a Python built from source into /usr/local): every file of the
# image then comes from Debian's packages, so a base made from those packages with debootstrap
# (what debian:bookworm-slim is made of) is the same base, and the container test builds this
# Dockerfile on such a local base where no image registry is reachable (BASE_IMAGE).
ARG BASE_IMAGE=debian:bookworm-slim

# --- base: Debian's Python and CA certificates, shared by both stages ---------------------
FROM ${BASE_IMAGE} AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# --- build: resolve nothing, install the locked set into /app/.venv ------------------------
FROM base AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON=/usr/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir uv==0.13.8
WORKDIR /app
# Dependencies first (a layer that changes only with the lock), then the project itself.
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-install-project
COPY glisk_pipeline ./glisk_pipeline
COPY webhook_service ./webhook_service
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable

# --- runtime: the virtualenv and the config files, no build tools --------------------------
FROM base AS runtime
RUN groupadd --system --gid 10001 glisk \
    && useradd --system --uid 10001 --gid glisk --home-dir /app --no-create-home glisk \
    && mkdir -p /opt/dagster/dagster_home/storage \
    && chown -R glisk:glisk /opt/dagster/dagster_home
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY deploy/workspace.yaml deploy/workspace.yaml
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    WEBHOOK_HOST=0.0.0.0 \
    WEBHOOK_PORT=8000
USER 10001:10001
EXPOSE 8000 3000 4000
# The sidecar's liveness (/healthz). Other roles override it (compose.yaml does).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEBHOOK_PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "webhook_service"]
