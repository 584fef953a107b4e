#!/usr/bin/env bash
# Installs everything the project needs into the work tree: a Python venv with exactly the
# versions in uv.lock (via uv, ~15x faster than pip here) and the npm dev-chain tools
# (anvil, solc). Idempotent and cheap when nothing changed.
# After changing dependencies in pyproject.toml: `.venv/bin/uv lock`, and commit uv.lock.
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
# "bytecode": venvs synced before the installed files were compiled get synced again once.
want="$(stamp pyproject.toml uv.lock) bytecode"
if [ "$(cat .venv/.glisk-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the locked Python dependencies into .venv"
  # --locked: fail (naming the fix, `uv lock`) when pyproject.toml changed but uv.lock did
  # not, rather than install versions nobody committed. uv finds .venv itself and keeps
  # the interpreter it was made with (no shim involved); the sync is exact, so packages
  # dropped from the lock leave the venv too.
  # --compile-bytecode, as the image does (UV_COMPILE_BYTECODE=1): where the environment
  # sets PYTHONDONTWRITEBYTECODE (as this machine and the image do), Python never caches
  # what it compiles, and every process compiled SQLAlchemy, pydantic, httpx... from
  # source again: ~0.75 s of the recovery CLI's ~1.55 s start-up (measured, median of 9).
  .venv/bin/uv sync --quiet --locked --extra dev --compile-bytecode
  echo "$want" > .venv/.glisk-stamp
fi
# The project's own modules likewise (~50 ms of the same start-up); cheap when they are
# up to date. A module edited since is compiled in memory: never a stale one.
.venv/bin/python -m compileall -q glisk_pipeline webhook_service

want="$(stamp package.json package-lock.json)"
if [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] \
   || [ "$(cat node_modules/.glisk-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing anvil and solc from the npm registry"
  # No --omit=optional: anvil's binary ships in an optional platform package.
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.glisk-stamp
fi
