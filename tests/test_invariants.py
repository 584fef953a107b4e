"""Architecture invariants that no behavioural test pins down on its own."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITES = re.compile(
    r"(insert\s+into|update|delete\s+from)\s+(mint_events|tokens)\b"  # SQL text
    r"|(insert|update|delete)\(\s*(mint_events|tokens)\b"  # SQLAlchemy Core
    r"|\b(mint_events|tokens)\.(insert|update|delete)\(",
    re.IGNORECASE,
)


STORE = ROOT / "glisk_pipeline" / "db" / "store"


def test_only_the_store_writes_mint_events_and_tokens() -> None:
    writers = [
        path
        for package in ("glisk_pipeline", "webhook_service")
        for path in (ROOT / package).rglob("*.py")
        if WRITES.search(path.read_text())
    ]
    outside = sorted(str(path.relative_to(ROOT)) for path in writers if STORE not in path.parents)
    assert outside == []
    # the rule sees the store's own writes (it cannot pass by matching nothing)
    assert writers


def test_the_pattern_catches_writes() -> None:  # the test above cannot pass by accident
    for sample in (
        "INSERT INTO tokens (token_id)",
        "conn.execute(update(mint_events).values(removed=True))",
        "delete from mint_events where",
        "mint_events.insert().values()",
    ):
        assert WRITES.search(sample), sample
    assert not WRITES.search("select(mint_events.c.id)")


# --- import boundaries: rules over the tree, not lists of modules --------------------------

PACKAGE = ROOT / "glisk_pipeline"
DAGSTER_ALLOWED = (PACKAGE / "defs", PACKAGE / "definitions.py")


def _imported_roots(path: Path) -> set[str]:
    """Top-level names of every module that `path` imports (module level or in a function)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _is_dagster(root: str) -> bool:
    return root == "dagster" or root.startswith("dagster_")


def _core_modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(path == allowed or allowed in path.parents for allowed in DAGSTER_ALLOWED)
    ]


def test_only_defs_and_definitions_import_dagster() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in _core_modules()
        if any(_is_dagster(root) for root in _imported_roots(path))
    )
    assert offenders == []
    # the rule sees the modules that do import Dagster (it cannot pass by matching nothing)
    assert any(_is_dagster(r) for r in _imported_roots(PACKAGE / "definitions.py"))


def test_nothing_in_glisk_pipeline_imports_fastapi_or_devtools() -> None:
    web = {"fastapi", "starlette", "uvicorn"}
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if _imported_roots(path) & (web | {"webhook_service", "devtools", "bench", "tests"})
    )
    assert offenders == []


def test_shipped_packages_do_not_import_devtools() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for package in ("glisk_pipeline", "webhook_service")
        for path in (ROOT / package).rglob("*.py")
        if _imported_roots(path) & {"devtools", "bench", "tests"}
    )
    assert offenders == []


def test_core_modules_load_neither_dagster_nor_fastapi() -> None:
    # The static rule above, checked at run time too: importing every core module (the
    # migrations excepted: Alembic runs them) must not load either framework transitively.
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in _core_modules()
        if "migrations" not in path.parts and path.name != "__main__.py"
    ]
    assert "glisk_pipeline.db.store" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dagster', 'fastapi', 'starlette', 'uvicorn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_recovery_cli_loads_only_what_a_recovery_needs() -> None:
    # Its start-up is part of every recovery's time (bench B1 measures the whole process):
    # Alembic (with Mako), httpx's own command line (click, rich, pygments), pandas, the
    # frameworks and eth-utils (with eth-typing and cytoolz; glisk_pipeline/chain/keccak.py does
    # what the core needed of it), cffi with pycparser (keccak's backend binds through
    # ctypes) are not loaded by a command that does not use them, and
    # neither is what only `--dry-run` or the closing supply proof uses (the audit, the
    # supply proof, windows: loaded when needed).
    unwanted = (
        "alembic", "mako", "click", "rich", "pygments", "pandas", "web3", "dagster",
        "eth_utils", "eth_typing", "cytoolz", "cffi", "pycparser",
    )  # fmt: skip
    dry_run_only = (
        "glisk_pipeline.verify.audit",
        "glisk_pipeline.verify.supply",
        "glisk_pipeline.windows",
    )
    code = (
        "import sys\n"
        "from glisk_pipeline.cli import recover_events, __main__\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({unwanted!r})))\n"
        f"print(sorted(set(sys.modules) & set({dry_run_only!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "[]"]


def test_the_recovery_cli_puts_its_imports_out_of_the_collectors_reach(tmp_path: Path) -> None:
    # What the imports built lives until the process exits; frozen (gc.freeze), the
    # collector does not walk it in each full collection and at exit (~0.12 s CPU).
    code = (
        "import gc\n"
        "from glisk_pipeline.cli import recover_events\n"
        "before = gc.get_freeze_count()\n"
        "recover_events.main(['--from-block', '1', '--to-block', '2'])\n"  # a config error
        "print(before, gc.get_freeze_count() > 50_000)"
    )
    # no settings (nor a .env in its directory): the command stops at the config error
    env = {"PATH": os.environ["PATH"]}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert "config error" in out.stderr
    assert out.stdout.split() == ["0", "True"]
