"""Test support: fixtures (loaded by tests/conftest.py as pytest plugins), the fault-injecting
JSON-RPC proxy, factories and helpers shared by several test files."""
