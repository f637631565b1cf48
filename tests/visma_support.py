"""What the Visma client's tests share: the client's credentials, a fake clock, request filters."""

from __future__ import annotations

from visma_webhooks_local.sandbox import VismaSandbox

CLIENT_ID = "integration-client"
CLIENT_SECRET = "s3cr3t-Kq81-do-not-leak"
SCOPE = "vismanet_erp_service_api:read vismanet_erp_service_api:create"
TENANT = "1262489"
CUSTOMER = "/v1/customer/10001"


class FakeClock:
    """A monotonic clock and a sleep that advances it (nothing really waits)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def token_requests(sb: VismaSandbox) -> list[dict]:
    return [r for r in sb.requests if r["path"] == "/connect/token"]


def api_requests(sb: VismaSandbox, path: str | None = None) -> list[dict]:
    return [r for r in sb.requests if r["path"].startswith("/v1/") and (path is None or r["path"] == path)]
