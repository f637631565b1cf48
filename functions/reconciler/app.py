"""ReconcilerFunction: finds the changes no webhook delivered (see visma_webhooks.domain.reconciliation).

On its schedule (an empty event, or EventBridge's) it reconciles every entity of every
tenant: the tenants seen in recent notifications plus the configured ones. An event may
narrow that: ``{"tenants": [...], "entities": [...]}`` (``visma-webhooks reconcile``), or
ask for a stretch of a backfill: ``{"backfill": {"tenant", "entity", "since"?, "dry_run"?,
"max_pages"?}}`` (``visma-webhooks backfill``), which runs until the invocation is nearly
out of time (or has read ``max_pages``) and says how far it got and what Visma's budget is. Metrics: ``MissedWebhooks`` (changes found that no webhook had
delivered; per tenant and entity in the metric record's ``missed_by_tenant_entity`` and in
the log line of each run), ``ReconcileEnqueued``,
``ReconcileListCalls``, ``ReconcileBudgetStops`` and ``ReconcileErrors``.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

from visma_webhooks.adapters.aws import SDK_CONFIG, SqsBatchSender
from visma_webhooks.adapters.visma_http import VismaClient
from visma_webhooks.adapters.watermarks import DynamoDBCursorStore
from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.queueing import BatchSender
from visma_webhooks.domain.reconciler_settings import ReconcilerSettings
from visma_webhooks.domain.reconciliation import (
    CountingSender,
    CursorStore,
    DryRunStore,
    EntityRun,
    Walk,
    backfill,
    reconcile_tenant,
)
from visma_webhooks.domain.reconciling import entities, stamp

METRICS = {
    "missed": "MissedWebhooks",
    "enqueued": "ReconcileEnqueued",
    "calls": "ReconcileListCalls",
}
SAFETY_SECONDS = 15.0  # a page (list, batch read, enqueue, store) fits in this

logger = Logger()
metrics = Metrics()
settings = ReconcilerSettings.from_env()
_dynamodb = boto3.client("dynamodb", config=SDK_CONFIG)
store = DynamoDBCursorStore(settings.visma.table_name, _dynamodb)
sender = SqsBatchSender(boto3.client("sqs", config=SDK_CONFIG), settings.visma.queue_url)


@cache
def visma_client() -> VismaClient:
    """The Visma client, spending the tenants' shared budget (its secret is read once per cold start)."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from visma_webhooks.adapters.budget_store import SharedBudget

    secret = SecretsProvider(boto3_client=boto3.client("secretsmanager", config=SDK_CONFIG)).get(
        settings.visma.secret_arn, transform="json"
    )
    if not isinstance(secret, dict) or not {"client_id", "client_secret"} <= secret.keys():
        raise ConfigurationError(
            "the Visma client secret must be a JSON object with client_id and client_secret"
        )
    budget = SharedBudget(settings.visma.table_name, _dynamodb, secret["client_id"], settings.visma.budget)
    return VismaClient(
        settings.visma.endpoints,
        settings.visma.token_url,
        secret["client_id"],
        secret["client_secret"],
        secret.get("scope"),
        budget=budget,
    )


def _walk(context: LambdaContext, walk_store: CursorStore, walk_sender: BatchSender) -> Walk:
    visma = visma_client()
    visma.remaining_time = lambda: context.get_remaining_time_in_millis() / 1000
    return Walk(
        visma,
        walk_store,
        walk_sender,
        now=lambda: stamp(datetime.now(UTC)),
        out_of_time=lambda: context.get_remaining_time_in_millis() / 1000 < SAFETY_SECONDS,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    if isinstance(event.get("backfill"), dict):
        return _backfill(event["backfill"], context)
    chosen = entities(event.get("entities") or [e.name for e in settings.entities])
    tenants = sorted(set(event.get("tenants") or store.tenants_seen() | set(settings.tenants)))
    walk = _walk(context, store, sender)
    runs: list[EntityRun] = []
    for tenant in tenants:
        if walk.out_of_time():
            break
        runs += reconcile_tenant(walk, tenant, chosen, settings.passes)
    _count(runs)
    return {"tenants": tenants, "runs": [_summary(r) for r in runs]}


def _backfill(request: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    (entity,) = entities([str(request.get("entity", ""))])
    dry_run = bool(request.get("dry_run"))
    walk_store: CursorStore = DryRunStore(store) if dry_run else store
    walk_sender: BatchSender = CountingSender() if dry_run else sender
    passes = replace(settings.passes, max_pages=int(request.get("max_pages") or settings.passes.max_pages))
    tenant = str(request["tenant"])
    run = backfill(_walk(context, walk_store, walk_sender), tenant, entity, request.get("since"), passes)
    if not dry_run:
        _count([run])
    seen = visma_client().rate_limit.get((tenant, entity.service))
    return {"dry_run": dry_run, "runs": [_summary(run)], "rate_limit": asdict(seen) if seen else None}


def _summary(run: EntityRun) -> dict[str, Any]:
    summary = asdict(run)
    summary["in_pass"] = run.cursor.in_pass
    return summary


def _count(runs: list[EntityRun]) -> None:
    missed = {f"{r.tenant_id}/{r.entity}": r.missed for r in runs if r.missed}
    if missed:  # per tenant and entity in the EMF record, not as dimensions: tenants are open-ended
        metrics.add_metadata(key="missed_by_tenant_entity", value=missed)
    for run in runs:
        logger.info(
            "reconciled",
            extra={k: v for k, v in asdict(run).items() if k != "cursor"}
            | {"watermark": run.cursor.watermark},
        )
        for field in METRICS:
            value = getattr(run, field)
            if value:
                metrics.add_metric(name=METRICS[field], unit=MetricUnit.Count, value=value)
        if run.stop == "budget":
            metrics.add_metric(name="ReconcileBudgetStops", unit=MetricUnit.Count, value=1)
        elif run.stop == "error":
            metrics.add_metric(name="ReconcileErrors", unit=MetricUnit.Count, value=1)
