"""The backfill as an operator sees it in Dagster: partitions, the asset, its checks,
the chain-head sensor."""
