# One image for every role, chosen by command (the same commands the topology test runs,
# tests/deploy_support.py ROLES):
#   code server  dagster code-server start -h 0.0.0.0 -p 4000 -m glisk_pipeline.definitions -a defs
#   webserver    dagster-webserver -h 0.0.0.0 -p 3000 -w deploy/workspace.yaml
#   daemon       dagster-daemon run -w deploy/workspace.yaml
#   sidecar      python -m webhook_service                 (the default command)
#   migrations   python -m glisk_pipeline.db.migrate upgrade
#   CLI          glisk COMMAND ...  (the operator command)
# Dependencies come from uv.lock (`uv sync --frozen`): what was tested is what ships.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: resolve nothing, install the locked set into /app/.venv ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
# Dependencies first (a layer that changes only with the lock), then the project itself.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY glisk_pipeline ./glisk_pipeline
COPY webhook_service ./webhook_service
RUN uv sync --frozen --no-dev --no-editable

# --- runtime: the virtualenv and the config files, no build tools --------------------------
FROM ${PYTHON_IMAGE} AS runtime
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
