"""What ``visma-webhooks local`` can be told: the stack's ports, Visma, the queue and the processor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from visma_webhooks_local.stack.state import DEFAULT_STATE_FILE
from visma_webhooks_local.stack.template import DEFAULT_TEMPLATE

STACK_NAME = "visma-webhooks-local"
DEFAULT_WEBHOOK_SECRET = "local-demo-secret"  # noqa: S105 - the documented local default
DEFAULT_TOKEN_URL = "https://connect.visma.com/connect/token"  # noqa: S105 - a URL
DEFAULT_SCOPE = "vismanet_erp_service_api:read vismanet_erp_service_api:create"
LOCAL_RETRY_BASE_SECONDS = 1.0
SANDBOX_CLIENT_ID = "local-client"  # the stack's own Visma Connect client against the embedded sandbox
# The processor's variables for each service's base URL and Visma Connect scopes.
SERVICE_URL_VARIABLES = {
    "financials": "VISMA_API_BASE_URL",
    "salesorders": "VISMA_SALESORDERS_BASE_URL",
    "journaltransactions": "VISMA_JOURNALTX_BASE_URL",
}
SERVICE_SCOPE_VARIABLES = {
    "financials": "VISMA_FINANCIALS_SCOPE",
    "salesorders": "VISMA_SALESORDERS_SCOPE",
    "journaltransactions": "VISMA_JOURNALTX_SCOPE",
}


@dataclass
class VismaOptions:
    """Where the processor finds Visma; all None means the embedded sandbox (every service).

    ``service_urls`` and ``service_scopes`` (by service name) override the template's
    defaults for that service; Financials' base URL is ``base_url``.
    """

    base_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = DEFAULT_SCOPE
    service_urls: dict[str, str] = field(default_factory=dict)
    service_scopes: dict[str, str] = field(default_factory=dict)

    def missing(self) -> list[str]:
        """The options a real Visma still needs once any of them is given (none for the sandbox)."""
        if not (self.base_url or self.token_url or self.client_id or self.client_secret or self.service_urls):
            return []
        given = (
            ("--visma-base-url", self.base_url),
            ("--client-id", self.client_id),
            ("--client-secret", self.client_secret),
        )
        return [name for name, value in given if not value]


@dataclass
class SandboxOptions:
    latency: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    port: int = 0
    anonymous_writes: bool = False  # write-back webhooks without ApiClientId, as before ERP 9.30
    calls_per_window: int | None = None  # the rate limit per (tenant, client); None: the sandbox's default
    window_seconds: float | None = None
    drop_webhooks: float = 0.0  # the share of its webhooks dropped, never sent
    seed: int | None = None  # of its fault and drop draws


@dataclass
class LocalOptions:
    port: int = 3000
    host: str = "127.0.0.1"
    visma: VismaOptions = field(default_factory=VismaOptions)
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)
    webhook_secrets: list[str] = field(default_factory=lambda: [DEFAULT_WEBHOOK_SECRET])
    max_receive_count: int | None = None
    visibility_timeout: int | None = None
    processor_timeout: float | None = None
    retry_base_seconds: float = LOCAL_RETRY_BASE_SECONDS
    aws_endpoint_url: str | None = None
    handler_modules: str | None = None
    processor: bool = True
    pollers: int = 1
    ingest_instances: int = 4
    template: Path = DEFAULT_TEMPLATE
    state_file: Path = DEFAULT_STATE_FILE
    function_log: Path | None = None  # None: the functions' logs go to stderr
    stack_name: str = STACK_NAME
    reconcile_interval: float = 0.0  # seconds between ReconcilerFunction runs; 0: not on a schedule
