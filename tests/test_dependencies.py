"""Every distribution the code imports is declared in pyproject.toml: the shipped packages'
imports among the runtime dependencies, dev code's (devtools, bench, tests) among those or
the `dev` extra. A package that arrives only as someone else's dependency can vanish with
their next release."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"glisk_pipeline", "webhook_service", "devtools", "bench", "tests"}


def _name(requirement: str) -> str:
    """PEP 503 normal form of a requirement's distribution name."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[=<>~!;]", requirement, maxsplit=1)[0]).lower()


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    return runtime, runtime | {_name(r) for r in project["optional-dependencies"]["dev"]}


def _imported_distributions(folder: str) -> dict[str, set[str]]:
    """distribution -> the modules of `folder` that import it."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            for root in roots - OURS - set(sys.stdlib_module_names):
                for dist in owners.get(root, [f"<not installed: {root}>"]):
                    found.setdefault(_name(dist), set()).add(str(path.relative_to(ROOT)))
    return found


def test_shipped_packages_import_only_runtime_dependencies() -> None:
    runtime, _ = _declared()
    imported = _imported_distributions("glisk_pipeline") | _imported_distributions(
        "webhook_service"
    )
    assert {"eth-hash", "sqlalchemy", "pydantic"} <= imported.keys()  # the scan sees imports
    assert {d: sorted(m) for d, m in imported.items() if d not in runtime} == {}


def test_dev_code_imports_only_declared_distributions() -> None:
    _, everything = _declared()
    undeclared = {
        dist: sorted(modules)
        for folder in ("devtools", "bench", "tests")
        for dist, modules in _imported_distributions(folder).items()
        if dist not in everything
    }
    assert undeclared == {}
