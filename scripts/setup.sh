#!/usr/bin/env bash
# Installs everything the project needs into the work tree: a Python venv with the
# pinned dependencies (via uv, ~15x faster than pip here) and the npm dev-chain tools
# (anvil, solc). Idempotent and cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# The pyenv shim breaks `venv`/`uv venv`: resolve the real interpreter.
PY="${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
fi
want="$(stamp pyproject.toml)"
if [ "$(cat .venv/.glisk-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv"
  VIRTUAL_ENV="$PWD/.venv" .venv/bin/uv pip install --quiet -e '.[dev]'
  echo "$want" > .venv/.glisk-stamp
fi

want="$(stamp package.json package-lock.json)"
if [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] \
   || [ "$(cat node_modules/.glisk-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing anvil and solc from the npm registry"
  # No --omit=optional: anvil's binary ships in an optional platform package.
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.glisk-stamp
fi
