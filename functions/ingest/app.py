"""IngestFunction: ``POST /webhooks/visma`` → verify, parse, enqueue (see visma_webhooks.domain.ingest)."""

from __future__ import annotations

import base64
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from aws_lambda_powertools.utilities.typing import LambdaContext

from visma_webhooks.adapters.aws import INGEST_SDK_CONFIG, SqsBatchSender
from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.ingest import Ingestor
from visma_webhooks.domain.settings import IngestSettings
from visma_webhooks.domain.signature import secret_list

SECRET_MAX_AGE_SECONDS = 300  # a rotated secret is picked up within five minutes

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver()

settings = IngestSettings.from_env()  # refuses to start without a secret (or explicit unsigned mode)
_sqs = boto3.client("sqs", config=INGEST_SDK_CONFIG)


@cache
def _secrets() -> SecretsProvider:
    """The secrets provider, made on first use (a request refused before the signature check never pays).

    It uses the default session's client: a SecretsProvider of its own would build a second boto3 session.
    """
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=boto3.client("secretsmanager", config=INGEST_SDK_CONFIG))


def webhook_secrets() -> list[str]:
    """The webhook secrets (several while one rotates), read again at most every five minutes."""
    if settings.secret_arn is None:  # unsigned mode (local only): nothing to verify against
        return []
    value = _secrets().get(settings.secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    if isinstance(value, dict):
        raise ConfigurationError("the webhook secret must be text or a JSON list of strings")
    return secret_list(value)


ingestor = Ingestor(
    settings,
    secrets=webhook_secrets,
    queue=SqsBatchSender(_sqs, settings.queue_url),
    dlq=SqsBatchSender(_sqs, settings.dlq_url),
)


@app.post("/webhooks/visma")
def receive() -> Response[dict[str, Any]]:
    event = app.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
    result = ingestor.handle(body, dict(event.headers), event.request_context.http.source_ip)
    if result.notification_ids:
        logger.append_keys(notification_ids=result.notification_ids)
    for name, value in result.counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    log = logger.warning if result.status >= 400 else logger.info
    log("delivery answered", extra={"status": result.status, "response": result.body})
    return Response(status_code=result.status, content_type="application/json", body=result.body)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
