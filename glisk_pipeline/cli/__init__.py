"""The operator commands (`glisk COMMAND`, or `python -m glisk_pipeline.cli.COMMAND`).

A command is a short-lived process, so its start-up counts. httpx imports its own
command-line tool (`httpx._main`: click, rich and pygments, ~0.2 s of the recovery CLI's
start-up, measured with `python -X importtime`) whenever click and rich are installed,
as they are here for Dagster; none of our commands uses it. Marking it as not importable
makes httpx fall back to its stub, as it does when they are missing.
"""

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"
