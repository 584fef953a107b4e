"""Development tools, outside the installed package: the anvil dev chain and its contract
artifacts, the demo and `dagster dev` driver, the chain-vs-tables oracle and the signed
webhook replay. Used by the tests, `make demo`/`make dev` and the benchmarks; never shipped."""
