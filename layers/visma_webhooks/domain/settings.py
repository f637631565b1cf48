"""Each function's configuration, read from its environment by one ``from_env``.

The template sets these variables (see the configuration reference in the docs); a
function whose settings fail :meth:`check` refuses to start rather than run unsafely.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from visma_webhooks.domain.budgets import BudgetSettings
from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.fingerprints import DEFAULT_IGNORED_FIELDS, ignored_fields
from visma_webhooks.domain.resources import ResourceRules
from visma_webhooks.domain.services import (
    FINANCIALS,
    JOURNAL_TRANSACTIONS,
    SALESORDERS,
    SERVICES,
    Endpoint,
    Endpoints,
)

DEFAULT_MAX_BODY_BYTES = 524_288  # 512 KiB: far above any real delivery, and every item fits one SQS message
DEFAULT_HANDLER_MODULES = ("visma_webhooks.notification_handlers.log",)
DEFAULT_TOKEN_URL = "https://connect.visma.com/connect/token"  # noqa: S105 - a URL, not a secret

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class IngestSettings:
    """Ingest configuration."""

    queue_url: str
    dlq_url: str
    secret_arn: str | None = None
    allow_unsigned: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    timestamp_tolerance_seconds: int = 0
    rules: ResourceRules = field(default_factory=ResourceRules)
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> IngestSettings:
        settings = cls(
            queue_url=env.get("QUEUE_URL", ""),
            dlq_url=env.get("DLQ_URL", ""),
            secret_arn=env.get("WEBHOOK_SECRET_ARN") or None,
            allow_unsigned=env.get("ALLOW_UNSIGNED", "").lower() == "true",
            max_body_bytes=int(env.get("MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES),
            timestamp_tolerance_seconds=int(env.get("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS") or 0),
            rules=ResourceRules.from_env(env),
            allowed_networks=networks(env.get("ALLOWED_SOURCE_IPS", "")),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not self.queue_url or not self.dlq_url:
            raise ConfigurationError("QUEUE_URL and DLQ_URL must be set")
        if not self.secret_arn and not self.allow_unsigned:
            raise ConfigurationError(
                "no webhook secret configured (WEBHOOK_SECRET_ARN); refusing to accept "
                "unsigned deliveries unless ALLOW_UNSIGNED=true (local use only)"
            )
        if not 0 < self.max_body_bytes <= DEFAULT_MAX_BODY_BYTES * 2:
            raise ConfigurationError("MAX_BODY_BYTES must be between 1 and 1048576")


def networks(value: str) -> tuple[Network, ...]:
    """Parse ``ALLOWED_SOURCE_IPS``: comma-separated addresses or CIDRs; empty means no allow-list."""
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigurationError(f"ALLOWED_SOURCE_IPS: {exc}") from None


@dataclass(frozen=True)
class ProcessorSettings:
    """Processor configuration; the defaults are the template's."""

    feedback_source: str = "visma-webhooks"
    max_receive_count: int = 5
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 900.0
    rules: ResourceRules = field(default_factory=ResourceRules)
    table_name: str = ""
    ttl_seconds: int = 168 * 3600
    queue_url: str = ""
    dlq_url: str = ""  # where a notification whose attempts are used up goes (see processing)
    secret_arn: str = ""
    handler_modules: tuple[str, ...] = DEFAULT_HANDLER_MODULES
    endpoints: Endpoints = field(default_factory=Endpoints)
    token_url: str = DEFAULT_TOKEN_URL
    fingerprint_ignore: frozenset[str] = DEFAULT_IGNORED_FIELDS
    budget: BudgetSettings = field(default_factory=BudgetSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ProcessorSettings:
        modules = env.get("HANDLER_MODULES")
        settings = cls(
            feedback_source=env.get("FEEDBACK_SOURCE")
            or env.get("POWERTOOLS_SERVICE_NAME", "visma-webhooks"),
            max_receive_count=_number(env, "MAX_RECEIVE_COUNT", int, 5),
            retry_base_seconds=_number(env, "RETRY_BASE_SECONDS", float, 10.0),
            rules=ResourceRules.from_env(env),
            table_name=env.get("IDEMPOTENCY_TABLE", ""),
            ttl_seconds=int(_number(env, "IDEMPOTENCY_TTL_HOURS", float, 168.0) * 3600),
            queue_url=env.get("QUEUE_URL", ""),
            dlq_url=env.get("DLQ_URL", ""),
            secret_arn=env.get("VISMA_CLIENT_SECRET_ARN", ""),
            handler_modules=(
                tuple(m.strip() for m in modules.split(",") if m.strip())
                if modules is not None
                else DEFAULT_HANDLER_MODULES
            ),
            endpoints=_endpoints(env),
            token_url=env.get("VISMA_TOKEN_URL") or DEFAULT_TOKEN_URL,
            fingerprint_ignore=ignored_fields((env.get("FINGERPRINT_IGNORE_FIELDS") or "").split(","))
            or DEFAULT_IGNORED_FIELDS,
            budget=BudgetSettings(
                reserve_percent=_number(env, "VISMA_BUDGET_RESERVE_PERCENT", float, 10.0),
                window_seconds=_number(env, "VISMA_BUDGET_WINDOW_SECONDS", float, 3600.0),
                assumed_limit=_number(env, "VISMA_BUDGET_ASSUMED_LIMIT", int, 500),
            ),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not self.table_name:
            raise ConfigurationError("IDEMPOTENCY_TABLE must be set")
        if not self.secret_arn:
            raise ConfigurationError(
                "VISMA_CLIENT_SECRET_ARN must be set: the processor needs the Visma client"
            )
        if self.max_receive_count < 1:
            raise ConfigurationError("MAX_RECEIVE_COUNT must be at least 1")
        if self.ttl_seconds <= 0:
            raise ConfigurationError("IDEMPOTENCY_TTL_HOURS must be positive")
        if not 0 <= self.budget.reserve_percent < 100:
            raise ConfigurationError("VISMA_BUDGET_RESERVE_PERCENT must be from 0 to under 100")
        if self.budget.window_seconds <= 0 or self.budget.assumed_limit < 1:
            raise ConfigurationError(
                "VISMA_BUDGET_WINDOW_SECONDS and VISMA_BUDGET_ASSUMED_LIMIT must be positive"
            )


# (base URL variable, scope variable) of each service; an empty scope: the client secret's.
SERVICE_VARIABLES = {
    FINANCIALS: ("VISMA_API_BASE_URL", "VISMA_FINANCIALS_SCOPE"),
    SALESORDERS: ("VISMA_SALESORDERS_BASE_URL", "VISMA_SALESORDERS_SCOPE"),
    JOURNAL_TRANSACTIONS: ("VISMA_JOURNALTX_BASE_URL", "VISMA_JOURNALTX_SCOPE"),
}


def _endpoints(env: Mapping[str, str]) -> Endpoints:
    """Each service's base URL and scopes from the environment; Visma's hosts by default."""
    by_service = {}
    for service, (base_variable, scope_variable) in SERVICE_VARIABLES.items():
        base_url = (env.get(base_variable) or SERVICES[service].default_base_url).strip()
        if not base_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"{base_variable} must be an http(s) URL, not {base_url!r}")
        by_service[service] = Endpoint(base_url, " ".join((env.get(scope_variable) or "").split()) or None)
    return Endpoints(by_service)


def _number(env: Mapping[str, str], name: str, kind: type[Number], default: Number) -> Number:
    value = env.get(name)
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {value!r}") from None
