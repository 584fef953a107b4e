"""The operator command: `glisk COMMAND ...` (or `python -m glisk_pipeline.cli COMMAND ...`).

Each command is a module of this package with a `main(argv) -> int`; this entry point only
dispatches, so `glisk --help` lists the commands without importing what they need.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line summary); the module is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "status": (
        "glisk_pipeline.cli.status",
        "how far behind the index is, and the integrity checks (exit 3 lagging, 4 failing)",
    ),
    "authors": ("glisk_pipeline.cli.authors", "register, import and list prompt authors"),
    "recover": (
        "glisk_pipeline.cli.recover_events",
        "fetch BatchMinted logs for a block range and store what is missing",
    ),
    "repair": (
        "glisk_pipeline.cli.repair",
        "store exactly the mints the supply proof finds missing (by token id; add-only)",
    ),
    "exporter": (
        "glisk_pipeline.cli.exporter",
        "serve the status gauges and the runs' counters on /metrics for Prometheus",
    ),
}


def usage() -> str:
    lines = ["usage: glisk COMMAND [ARGS...]   (glisk COMMAND --help for its options)", ""]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"glisk: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 1
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
