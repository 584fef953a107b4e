"""Every way logs come in by RPC: the backfill loop, the tip fill, the targeted repair."""
