"""Talking to the embedded Visma sandbox as a client would: a token for a tenant, its header."""

from __future__ import annotations

import requests

from visma_webhooks_local.sandbox import VismaSandbox

TENANT = "1262489"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def token(sb: VismaSandbox, http: requests.Session, tenant: str = TENANT, **form: str) -> str:
    data = {
        "grant_type": "client_credentials",
        "client_id": "id",
        "client_secret": "secret",
        "tenant_id": tenant,
    }
    response = http.post(sb.token_url, data={**data, **form}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
