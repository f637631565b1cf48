"""Fixtures of the integration tests: the embedded Visma sandbox and an HTTP session to talk to it."""

from __future__ import annotations

import pytest
import requests

from visma_webhooks_local.sandbox import VismaSandbox


@pytest.fixture
def sandbox():
    with VismaSandbox() as sb:
        yield sb


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session
