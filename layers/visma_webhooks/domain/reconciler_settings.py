"""The reconciler's configuration: the processor's Visma and table settings, plus its own.

It reaches Visma, the table and the queue exactly as the processor does (the same
variables, read by :class:`~visma_webhooks.domain.settings.ProcessorSettings`), and adds:
``RECONCILE_ENTITIES`` (comma-separated, :data:`~visma_webhooks.domain.reconciling.ENTITIES`),
``RECONCILE_TENANTS`` (reconciled besides the tenants seen recently),
``RECONCILE_INTERVAL_MINUTES`` (a first pass looks back one interval),
``RECONCILE_OVERLAP_SECONDS``, ``RECONCILE_SETTLE_SECONDS`` and ``RECONCILE_PAGE_SIZE``.
It spends the tenants' budget with the processor's ``VISMA_BUDGET_*`` settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.reconciliation import PassSettings
from visma_webhooks.domain.reconciling import DEFAULT_ENTITIES, Entity, entities
from visma_webhooks.domain.settings import ProcessorSettings

MAX_PAGE_SIZE = 1000


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in (value or "").split(",") if p.strip()))


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name) or default)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {env.get(name)!r}") from None


@dataclass(frozen=True)
class ReconcilerSettings:
    visma: ProcessorSettings
    entities: tuple[Entity, ...]
    tenants: tuple[str, ...] = ()
    passes: PassSettings = field(default_factory=PassSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ReconcilerSettings:
        try:
            chosen = entities(_csv(env.get("RECONCILE_ENTITIES")) or DEFAULT_ENTITIES)
        except ValueError as exc:
            raise ConfigurationError(f"RECONCILE_ENTITIES: {exc}") from None
        page_size = int(_float(env, "RECONCILE_PAGE_SIZE", 500))
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigurationError(f"RECONCILE_PAGE_SIZE must be between 1 and {MAX_PAGE_SIZE}")
        passes = PassSettings(
            page_size=page_size,
            overlap_seconds=_float(env, "RECONCILE_OVERLAP_SECONDS", 300),
            settle_seconds=_float(env, "RECONCILE_SETTLE_SECONDS", 120),
            lookback_seconds=_float(env, "RECONCILE_INTERVAL_MINUTES", 15) * 60,
        )
        if min(passes.overlap_seconds, passes.settle_seconds, passes.lookback_seconds) < 0:
            raise ConfigurationError(
                "the reconciler's overlap, settle time and interval must not be negative"
            )
        settings = cls(
            visma=ProcessorSettings.from_env(env),
            entities=chosen,
            tenants=_csv(env.get("RECONCILE_TENANTS")),
            passes=passes,
        )
        if not settings.visma.queue_url:
            raise ConfigurationError("QUEUE_URL must be set: the reconciler enqueues what it finds")
        return settings
