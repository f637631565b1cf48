"""Each function refuses to start on settings it cannot run safely with, naming the variable."""

from __future__ import annotations

import pytest

from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.settings import IngestSettings, ProcessorSettings

PROCESSOR = {"IDEMPOTENCY_TABLE": "idempotency", "VISMA_CLIENT_SECRET_ARN": "arn:visma-client"}
INGEST = {"QUEUE_URL": "https://sqs/queue", "DLQ_URL": "https://sqs/dlq", "WEBHOOK_SECRET_ARN": "arn:webhook"}


def test_good_settings_are_read():
    settings = ProcessorSettings.from_env(
        {**PROCESSOR, "MAX_RECEIVE_COUNT": "7", "IDEMPOTENCY_TTL_HOURS": "1.5"}
    )
    assert (settings.max_receive_count, settings.ttl_seconds) == (7, 5400)
    assert IngestSettings.from_env(INGEST).queue_url == "https://sqs/queue"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IDEMPOTENCY_TABLE": ""}, "IDEMPOTENCY_TABLE must be set"),
        ({"VISMA_CLIENT_SECRET_ARN": ""}, "VISMA_CLIENT_SECRET_ARN must be set"),
        ({"MAX_RECEIVE_COUNT": "0"}, "MAX_RECEIVE_COUNT must be at least 1"),
        ({"MAX_RECEIVE_COUNT": "five"}, "MAX_RECEIVE_COUNT must be a number, not 'five'"),
        ({"IDEMPOTENCY_TTL_HOURS": "-1"}, "IDEMPOTENCY_TTL_HOURS must be positive"),
        (
            {"VISMA_SALESORDERS_BASE_URL": "ftp://salesorder.visma.net"},
            "VISMA_SALESORDERS_BASE_URL must be an http",
        ),
        ({"VISMA_BUDGET_RESERVE_PERCENT": "100"}, "VISMA_BUDGET_RESERVE_PERCENT must be from 0 to under 100"),
        ({"VISMA_BUDGET_RESERVE_PERCENT": "-1"}, "VISMA_BUDGET_RESERVE_PERCENT must be from 0 to under 100"),
        ({"VISMA_BUDGET_WINDOW_SECONDS": "0"}, "VISMA_BUDGET_WINDOW_SECONDS and VISMA_BUDGET_ASSUMED_LIMIT"),
        ({"VISMA_BUDGET_ASSUMED_LIMIT": "0"}, "VISMA_BUDGET_WINDOW_SECONDS and VISMA_BUDGET_ASSUMED_LIMIT"),
        ({"VISMA_BUDGET_ASSUMED_LIMIT": "many"}, "VISMA_BUDGET_ASSUMED_LIMIT must be a number, not 'many'"),
    ],
)
def test_the_processor_refuses_bad_settings(env, message):
    with pytest.raises(ConfigurationError, match=message):
        ProcessorSettings.from_env({**PROCESSOR, **env})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QUEUE_URL": ""}, "QUEUE_URL and DLQ_URL must be set"),
        ({"DLQ_URL": ""}, "QUEUE_URL and DLQ_URL must be set"),
        ({"MAX_BODY_BYTES": "2000000"}, "MAX_BODY_BYTES must be between 1 and 1048576"),
    ],
)
def test_ingest_refuses_bad_settings(env, message):
    with pytest.raises(ConfigurationError, match=message):
        IngestSettings.from_env({**INGEST, **env})
