# The shared fixtures: one anvil and one PostgreSQL database per session (truncated between
# tests), and the environment of a `glisk` command run against them.
pytest_plugins = [
    "tests.support.fixtures_chain",
    "tests.support.fixtures_db",
    "tests.support.fixtures_cli",
]
