"""Fixtures: one real sidecar process for the session, on the session's PostgreSQL
database (through a proxy a test can cut) and the session's anvil contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import Service, TcpProxy, running, service_env


@pytest.fixture(scope="session")
def pg_proxy(pg_url: str) -> Iterator[TcpProxy]:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def webhook_session(
    pg_url: str, pg_proxy: TcpProxy, deployed_chain: DevChain, tmp_path_factory
) -> Iterator[Service]:
    env = service_env(pg_proxy.url_for(pg_url), deployed_chain.glisk)
    with running(env, tmp_path_factory.mktemp("webhook")) as service:
        yield service


@pytest.fixture
def webhook(webhook_session: Service, pg_proxy: TcpProxy, pg_engine: Engine) -> Service:
    """The running sidecar, with empty tables and the database reachable."""
    pg_proxy.up()
    return webhook_session
