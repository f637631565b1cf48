"""Every hostile delivery in the corpus gets a clear 4xx or a safe quarantine, through the real handler."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.adversarial.corpus import CASES, SIGNATURE_ATTACKS, Case
from tests.adversarial.safety import assert_safe_attributes, assert_safe_notification_body, strict_json
from tests.conftest import drain, record_batch_calls
from visma_webhooks.domain.queueing import QUARANTINE_KEY, REJECTION_ATTRIBUTE
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext, http_api_event


def attributes(message: dict) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


def test_corpus_is_large_and_names_are_unique():
    names = Counter(case.name for case in CASES)

    assert len(CASES) >= 40
    assert [name for name, count in names.items() if count > 1] == []
    assert len(SIGNATURE_ATTACKS) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_delivery_is_refused_or_quarantined(case: Case, monkeypatch, queues, webhook_secrets):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", webhook_secrets["arn"])
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    app = load_function("ingest")
    calls = record_batch_calls(app)

    headers = {
        "content-type": "application/json",
        **case.headers,
        **case.signer(case.body, webhook_secrets["values"][0]),
    }
    event = http_api_event(case.body, headers)
    if case.raw_headers:
        event["headers"] = dict(headers)
    result = app.handler(event, LambdaContext("ingest"))
    answer = json.loads(result["body"])
    queued = drain(queues["sqs"], queues["queue_url"])
    kept = drain(queues["sqs"], queues["dlq_url"])

    # Whatever the answer, nothing unsafe is on the notifications queue.
    for message in queued:
        assert_safe_notification_body(message["Body"])
        assert_safe_attributes(attributes(message))

    assert result["statusCode"] == case.status, answer
    if case.status != 202:
        assert 400 <= case.status < 500
        assert answer["message"]
        assert (calls, queued, kept) == ([], [], [])
        return

    assert answer["accepted"] == case.accepted == len(queued)
    assert answer["duplicates"] == case.duplicates
    assert len(answer["rejected"]) == case.rejected == len(kept)
    items = case.items()
    for message in kept:
        reason = attributes(message)[REJECTION_ATTRIBUTE]
        assert reason
        assert_safe_attributes(attributes(message))
        quarantine = strict_json(message["Body"])[QUARANTINE_KEY]
        assert quarantine["item"] == items[quarantine["index"]], "a quarantined item must be kept whole"
        assert quarantine["reasons"]
    assert sorted(strict_json(m["Body"])[QUARANTINE_KEY]["index"] for m in kept) == sorted(
        r["index"] for r in answer["rejected"]
    )


def test_item_larger_than_a_queue_message_fits_the_raised_body_limit():
    """The 413 of that case comes from the queue message size, not from the body size check."""
    [case] = [c for c in CASES if c.name == "item-larger-than-a-queue-message"]

    assert len(case.body) <= int(case.env["MAX_BODY_BYTES"])
