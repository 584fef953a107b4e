"""Run the project's path in a fresh process and print its peak RSS (JSON on stdout):
`python -m bench.rss_probe RPC DB CONTRACT FROM TO`. A separate process, so the peak
belongs to this range alone and not to the chain setup or an earlier contender."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.contenders import project


def main(argv: list[str]) -> int:
    rpc, db, contract, lo, hi = argv
    before = _hwm_kib()
    counts = project(rpc, db, contract, int(lo), int(hi))
    print(
        json.dumps(
            {**counts, "rss_after_imports_mb": before / 1024, "peak_rss_mb": _hwm_kib() / 1024}
        )
    )


def _hwm_kib() -> int:
    """VmHWM: this image's peak RSS. (ru_maxrss survives exec, so a child forked from a
    big parent would report the parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
