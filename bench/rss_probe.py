"""Run the project's path in a fresh process and print its peak RSS (JSON on stdout):
`python -m bench.rss_probe RPC DB CONTRACT FROM TO`. A separate process, so the peak
belongs to this range alone and not to the chain setup or an earlier contender."""

from __future__ import annotations

import json
import resource
import sys

from bench.contenders import project


def main(argv: list[str]) -> int:
    rpc, db, contract, lo, hi = argv
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts = project(rpc, db, contract, int(lo), int(hi))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({**counts, "rss_after_imports_mb": before / 1024, "peak_rss_mb": peak / 1024}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
