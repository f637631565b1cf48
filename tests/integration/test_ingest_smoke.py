import json

from tests.conftest import load_event
from visma_webhooks.local.lambda_events import LambdaContext, http_api_event
from visma_webhooks.signature import sign


def test_signed_legacy_array_is_enqueued(ingest_app, queues, webhook_secrets):
    body = json.dumps(load_event("legacy-grouped.json")).encode()
    headers = {
        "content-type": "application/json",
        "x-vwd-signature-v1": sign(body, webhook_secrets["values"][1]),
    }
    result = ingest_app.handler(http_api_event(body, headers), LambdaContext("ingest"))
    assert result["statusCode"] == 202, result
    assert json.loads(result["body"])["accepted"] == 5
    attrs = queues["sqs"].get_queue_attributes(
        QueueUrl=queues["queue_url"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "5"
