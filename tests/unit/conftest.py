"""Fixtures of the Visma client's tests: the embedded sandbox over loopback, clients made against it."""

from __future__ import annotations

import pytest

from tests.visma_support import CLIENT_ID, CLIENT_SECRET, SCOPE
from visma_webhooks.adapters.visma_http import VismaClient
from visma_webhooks_local.sandbox import VismaSandbox


@pytest.fixture
def sandbox():
    with VismaSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sb:
        yield sb


@pytest.fixture
def make_client(sandbox):
    clients: list[VismaClient] = []

    def make(secret: str = CLIENT_SECRET, target: VismaSandbox | None = None, **kwargs) -> VismaClient:
        kwargs.setdefault("backoff", 0.01)
        kwargs.setdefault("timeout", (1.0, 2.0))
        target = target or sandbox
        client = VismaClient(target.url, target.token_url, CLIENT_ID, secret, SCOPE, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
