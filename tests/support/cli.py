"""Running the `glisk` command in tests: as a process (GLISK), or in process with the
environment a test sets (use)."""

from __future__ import annotations

import sys

import pytest

GLISK = [sys.executable, "-m", "glisk_pipeline.cli"]


def use(monkeypatch: pytest.MonkeyPatch, environment: dict, **changes: str) -> None:
    for key, value in {**environment, **changes}.items():
        monkeypatch.setenv(key, value)
