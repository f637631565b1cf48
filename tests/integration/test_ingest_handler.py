"""IngestFunction end to end: the real handler module on SQS and Secrets Manager emulated by moto."""

from __future__ import annotations

import json
import math
import uuid

import boto3
import pytest

from tests.conftest import EVENTS, REGION, deliver, drain, load_event, record_batch_calls
from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.queueing import MAX_BATCH_BYTES, QUARANTINE_KEY, REJECTION_ATTRIBUTE, UNKNOWN_GROUP
from visma_webhooks.domain.signature import SIGNATURE_HEADER, sign
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext, http_api_event

# The secret the committed API Gateway events are signed with (the local stack's default).
DEMO_SECRET = "local-demo-secret"
DISPATCHER_IP = "18.202.121.26"
APIGW_EVENTS = {
    "apigw-legacy-single.json": "legacy-single.json",
    "apigw-legacy-grouped.json": "legacy-grouped.json",
    "apigw-dispatcher.json": "dispatcher-delivery.json",
}


def item(number: int, **fields) -> dict:
    """A valid legacy item, distinct per ``number``."""
    return {
        "notificationId": f"00000000-0000-4000-8000-{number:012d}",
        "contextId": "1262489",
        "event": "salesorder_changed",
        "resourceUri": f"https://api.finance.visma.net/v1/salesorder/{number}",
        "timeStamp": 638680512000000000 + number,
        **fields,
    }


def signed(body: bytes, secret: str, **headers: str) -> dict:
    return {"content-type": "application/json", SIGNATURE_HEADER: sign(body, secret), **headers}


def encode(payload) -> bytes:
    return json.dumps(payload).encode()


def attributes(message: dict) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


def groups(sqs, queue_url: str) -> dict[str, str]:
    """Every message on a queue: its ``notification_id`` attribute (or body) → its ``MessageGroupId``."""
    found: dict[str, str] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            return found
        for m in batch:
            found[attributes(m).get("notification_id", m["Body"])] = m["Attributes"].get("MessageGroupId")


class EntryFailures:
    """Makes SQS answer ``Failed`` for chosen entries, as it does under partial failure.

    The entry is withheld from the real (moto) call and reported back as failed, so a retry
    that works is visible as the message arriving once.
    """

    def __init__(self, client, entry_id: str, times: int | None):
        self.entry_id, self.remaining = entry_id, times
        self.withheld: list[str] = []
        client.meta.events.register("before-parameter-build.sqs.SendMessageBatch", self._withhold)
        client.meta.events.register("after-call.sqs.SendMessageBatch", self._report)

    def _withhold(self, params, **_):
        if self.remaining == 0 or not any(e["Id"] == self.entry_id for e in params["Entries"]):
            return
        params["Entries"] = [e for e in params["Entries"] if e["Id"] != self.entry_id]
        self.withheld.append(self.entry_id)
        if self.remaining is not None:
            self.remaining -= 1

    def _report(self, parsed, **_):
        if self.withheld:
            failure = {"Id": self.withheld.pop(), "SenderFault": False, "Code": "InternalError"}
            parsed.setdefault("Failed", []).append(failure | {"Message": "injected"})


# --- accepted deliveries ---------------------------------------------------------------------------


def test_grouped_legacy_delivery_lands_on_the_queue_with_attributes(ingest_app, queues, webhook_secrets):
    payload = load_event("legacy-grouped.json")
    body = encode(payload)
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    assert answer == {"accepted": 5, "rejected": [], "duplicates": 0}
    messages = drain(queues["sqs"], queues["queue_url"])
    assert len(messages) == 5
    by_id = {attributes(m)["notification_id"]: m for m in messages}
    assert set(by_id) == {i["notificationId"] for i in payload}
    for original in payload:
        message = by_id[original["notificationId"]]
        notification = Notification.model_validate_json(message["Body"])
        assert attributes(message) == {
            "event": original["event"],
            "tenant_id": "1262489",
            "notification_id": original["notificationId"],
            "source_format": "legacy",
        }
        assert notification.raw == original
    assert drain(queues["sqs"], queues["dlq_url"]) == []


def test_dispatcher_delivery_takes_tenant_and_id_from_its_headers(ingest_app, queues, webhook_secrets):
    sample = load_event("dispatcher-delivery.json")
    body = encode(sample["body"])
    headers = signed(body, webhook_secrets["values"][1], **sample["headers"])
    status, answer = deliver(ingest_app, body, headers)

    assert status == 202, answer
    [message] = drain(queues["sqs"], queues["queue_url"])
    assert attributes(message) == {
        "event": "customer_changed",
        "tenant_id": sample["headers"]["x-vwd-tenant-id"],
        "notification_id": sample["headers"]["x-vwd-notification-id"],
        "source_format": "dispatcher",
    }
    notification = Notification.model_validate_json(message["Body"])
    assert (notification.service, notification.resource_path) == ("financials", "/v1/customer/10002")
    assert notification.publisher == "Visma Net Financial"


def test_a_shared_header_id_wins_over_body_ids_and_is_suffixed_per_item(ingest_app, queues, webhook_secrets):
    items = [
        {
            "Event": "Customer Changed",
            "Id": "10002",
            "ResourceUri": "https://api.finance.visma.net/v1/customer/10002",
        },
        {
            "Event": "Customer Changed",
            "Id": "10002",
            "ResourceUri": "https://api.finance.visma.net/v1/customer/10002",
        },
        {
            "Event": "SALESORDER_UPDATED",
            "ResourceUri": "https://salesorder.visma.net/api/v3/SalesOrders/SO/1286",
        },
    ]
    body = encode(items)
    headers = signed(
        body, webhook_secrets["values"][0], **{"x-vwd-tenant-id": "t-1", "x-vwd-notification-id": "d-7"}
    )
    status, answer = deliver(ingest_app, body, headers)

    assert status == 202, answer
    assert answer == {"accepted": 3, "rejected": [], "duplicates": 0}
    queued = sorted(
        (Notification.model_validate_json(m["Body"]) for m in drain(queues["sqs"], queues["queue_url"])),
        key=lambda n: n.notification_id,
    )
    assert [(n.notification_id, n.derived_id) for n in queued] == [
        ("d-7:0", True),
        ("d-7:1", True),
        ("d-7:2", True),
    ]
    assert (queued[2].service, queued[2].resource_path) == ("salesorders", "/api/v3/SalesOrders/SO/1286")
    assert queued[2].publisher == "visma.net.erp.salesorderservice"


def test_a_secret_stored_with_a_trailing_newline_verifies(monkeypatch, queues):
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="pasted-webhook-secret", SecretString="pasted-secret-Q7z\n"
    )["ARN"]
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", arn)
    app = load_function("ingest")
    body = encode([item(1)])

    status, answer = deliver(app, body, signed(body, "pasted-secret-Q7z"))
    assert status == 202, answer
    assert answer["accepted"] == 1


def test_repeated_signature_headers_joined_by_api_gateway_verify(ingest_app, queues, webhook_secrets):
    body = encode([item(2)])
    old, new = (sign(body, secret) for secret in webhook_secrets["values"])
    headers = {"content-type": "application/json", SIGNATURE_HEADER: f"{sign(body, 'retired-secret')},{new}"}

    status, answer = deliver(ingest_app, body, headers)
    assert status == 202, answer
    status, answer = deliver(ingest_app, body, {**headers, SIGNATURE_HEADER: f"{old},{new}"})
    assert status == 202, answer
    status, answer = deliver(ingest_app, body, {**headers, SIGNATURE_HEADER: f"{new[:20]},{new[20:]}"})
    assert status == 401, answer


def test_a_quarantined_item_names_its_service_refusal(ingest_app, queues, webhook_secrets):
    items = [
        item(3, resourceUri="https://salesorder.visma.net/v1/customer/1"),
        item(4, resourceUri="https://api.finance.visma.net/v1/salesorder/SO/4/lines/1"),
        item(5, resourceUri="https://journaltx.visma.net.evil.example/api/v1/journal/1"),
    ]
    body = encode(items)
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    reasons = [r["reasons"][0] for r in answer["rejected"]]
    assert "matches no resource pattern of salesorders" in reasons[0]
    assert "no SalesOrders V3 equivalent" in reasons[1]
    assert "not allow-listed for any service" in reasons[2]
    kept = drain(queues["sqs"], queues["dlq_url"])
    assert sorted(json.loads(m["Body"])[QUARANTINE_KEY]["item"]["notificationId"] for m in kept) == sorted(
        i["notificationId"] for i in items
    )


@pytest.mark.parametrize("n", [1, 10, 25])
def test_n_notifications_take_ceil_n_over_10_batch_calls(n, ingest_app, queues, webhook_secrets, batch_calls):
    body = encode([item(i) for i in range(n)])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    assert answer["accepted"] == n
    assert len(batch_calls) == math.ceil(n / 10)
    assert {url for url, _ in batch_calls} == {queues["queue_url"]}
    assert all(len(entries) <= 10 for _, entries in batch_calls)
    received = [attributes(m)["notification_id"] for m in drain(queues["sqs"], queues["queue_url"])]
    assert sorted(received) == sorted(item(i)["notificationId"] for i in range(n))


def test_large_items_are_split_to_respect_the_1_mib_batch_limit(monkeypatch, queues, webhook_secrets):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", webhook_secrets["arn"])
    monkeypatch.setenv("MAX_BODY_BYTES", "1048576")
    app = load_function("ingest")
    calls = record_batch_calls(app)
    # U+FFFE travels escaped in a queue message (6 bytes for its 3), so ten items of 60 kB
    # make about 1.2 MB of messages: more than one SendMessageBatch may carry.
    payload = [item(i, note="\ufffe" * 20_000) for i in range(10)]
    body = encode(payload).replace(b"\\ufffe", "\ufffe".encode())
    assert len(body) < 1_048_576
    status, answer = deliver(app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    assert len(calls) == 2  # ⌈10/10⌉ would be one
    for _, entries in calls:
        assert sum(len(e["MessageBody"].encode()) for e in entries) <= MAX_BATCH_BYTES
    messages = drain(queues["sqs"], queues["queue_url"])
    assert len(messages) == 10
    assert all(Notification.model_validate_json(m["Body"]).raw["note"] == "\ufffe" * 20_000 for m in messages)


def test_an_item_too_large_for_one_queue_message_is_413_not_an_endless_503(
    monkeypatch, queues, webhook_secrets
):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", webhook_secrets["arn"])
    monkeypatch.setenv("MAX_BODY_BYTES", "1048576")
    app = load_function("ingest")
    calls = record_batch_calls(app)
    body = encode([item(1, note="x" * 1_048_176)])
    assert len(body) <= 1_048_576
    status, answer = deliver(app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 413, answer
    assert calls == []
    assert drain(queues["sqs"], queues["queue_url"]) == []


def test_duplicates_inside_one_request_are_enqueued_once(ingest_app, queues, webhook_secrets, batch_calls):
    body = encode([item(1), item(2), item(1), item(1, action="Freight")])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    assert (answer["accepted"], answer["duplicates"]) == (2, 2)
    ids = sorted(attributes(m)["notification_id"] for m in drain(queues["sqs"], queues["queue_url"]))
    assert ids == [item(1)["notificationId"], item(2)["notificationId"]]
    assert sum(len(entries) for _, entries in batch_calls) == 2


# --- SQS failures ----------------------------------------------------------------------------------


def test_a_failed_entry_is_retried_and_then_delivered(ingest_app, queues, webhook_secrets, batch_calls):
    failures = EntryFailures(ingest_app._sqs, "n3", times=1)
    body = encode([item(i) for i in range(5)])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    assert failures.remaining == 0
    assert [len(entries) for _, entries in batch_calls] == [5, 1]
    assert batch_calls[1][1][0]["Id"] == "n3"
    received = sorted(attributes(m)["notification_id"] for m in drain(queues["sqs"], queues["queue_url"]))
    assert received == sorted(item(i)["notificationId"] for i in range(5))


def test_an_entry_that_keeps_failing_gives_503(ingest_app, queues, webhook_secrets, batch_calls):
    EntryFailures(ingest_app._sqs, "n0", times=None)
    body = encode([item(i) for i in range(3)])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 503, answer
    assert "retry" in answer["message"]
    assert [len(entries) for _, entries in batch_calls] == [3, 1, 1]


def test_a_queue_that_refuses_every_call_gives_503(ingest_app, queues, webhook_secrets, batch_calls):
    queues["sqs"].delete_queue(QueueUrl=queues["queue_url"])
    body = encode([item(1)])
    status, _ = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 503
    assert len(batch_calls) == 3


# --- refused deliveries ----------------------------------------------------------------------------

BODY = encode([item(1)])


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param(sign(BODY, "not-the-secret"), id="wrong-secret"),
        pytest.param(sign(b"[]", "first-secret-Xq2v9"), id="other-body"),
        pytest.param("this is not base64!", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_unauthenticated_delivery_is_401_and_nothing_is_enqueued(
    signature, ingest_app, queues, webhook_secrets, batch_calls
):
    assert "first-secret-Xq2v9" in webhook_secrets["values"]
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    status, answer = deliver(ingest_app, BODY, headers)

    assert status == 401, answer
    assert batch_calls == []
    assert drain(queues["sqs"], queues["queue_url"]) == []
    assert drain(queues["sqs"], queues["dlq_url"]) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'"a string"', "object or array"),
        (b"[1, {}, []]", "item 0 must be a JSON object"),
        (b"\xff\xfe[]", "UTF-8"),
    ],
)
def test_malformed_body_is_400_naming_the_problems(body, problem, ingest_app, queues, webhook_secrets):
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 400, answer
    assert isinstance(answer["problems"], list)
    assert any(problem in p for p in answer["problems"]), answer
    assert drain(queues["sqs"], queues["queue_url"]) == []


def test_body_above_the_size_limit_is_413(ingest_app, queues, webhook_secrets, batch_calls):
    body = encode([item(1, note="x" * 600_000)])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 413, answer
    assert "524288" in answer["message"]
    assert batch_calls == []


def test_rejected_items_are_kept_in_the_dlq_and_listed(ingest_app, queues, webhook_secrets):
    ssrf = item(2, resourceUri="https://169.254.169.254/latest/meta-data/")
    no_event = {k: v for k, v in item(3).items() if k != "event"}
    body = encode([item(1), ssrf, no_event])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    assert answer["accepted"] == 1
    assert [(r["index"], r["notificationId"]) for r in answer["rejected"]] == [
        (1, ssrf["notificationId"]),
        (2, no_event["notificationId"]),
    ]
    assert "not allow-listed" in answer["rejected"][0]["reasons"][0]
    assert answer["rejected"][1]["reasons"] == ["no event"]

    [accepted] = drain(queues["sqs"], queues["queue_url"])
    assert attributes(accepted)["notification_id"] == item(1)["notificationId"]
    kept = {attributes(m)["notification_id"]: m for m in drain(queues["sqs"], queues["dlq_url"])}
    assert set(kept) == {ssrf["notificationId"], no_event["notificationId"]}
    assert "not allow-listed" in attributes(kept[ssrf["notificationId"]])[REJECTION_ATTRIBUTE]
    assert attributes(kept[no_event["notificationId"]])[REJECTION_ATTRIBUTE] == "no event"
    assert json.loads(kept[ssrf["notificationId"]]["Body"])[QUARANTINE_KEY]["item"] == ssrf


def test_each_message_is_in_its_tenants_fair_queue_group(ingest_app, queues, webhook_secrets):
    other = item(2, contextId="9000001")
    no_tenant = {k: v for k, v in item(3).items() if k != "contextId"}
    bad_with_tenant = item(4, resourceUri="https://169.254.169.254/latest/meta-data/")
    body = encode([item(1), other, no_tenant, bad_with_tenant])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    assert groups(queues["sqs"], queues["queue_url"]) == {
        item(1)["notificationId"]: "1262489",
        other["notificationId"]: "9000001",
    }
    assert groups(queues["sqs"], queues["dlq_url"]) == {
        no_tenant["notificationId"]: UNKNOWN_GROUP,
        bad_with_tenant["notificationId"]: "1262489",
    }


def test_a_tenant_id_too_long_for_a_group_id_gets_a_group_of_its_own(ingest_app, queues, webhook_secrets):
    tenants = ["7" * 150, "7" * 149 + "8"]  # valid tenant ids; SQS takes group ids up to 128 characters
    body = encode([item(1, contextId=tenants[0]), item(2, contextId=tenants[1])])
    status, answer = deliver(ingest_app, body, signed(body, webhook_secrets["values"][0]))

    assert status == 202, answer
    found = groups(queues["sqs"], queues["queue_url"])
    assert len(set(found.values())) == 2
    assert all(g.startswith("sha256:") and len(g) <= 128 for g in found.values())


# --- configuration and logs ------------------------------------------------------------------------


def test_function_refuses_to_start_without_a_secret(monkeypatch, queues):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.delenv("WEBHOOK_SECRET_ARN", raising=False)
    monkeypatch.delenv("ALLOW_UNSIGNED", raising=False)
    with pytest.raises(ConfigurationError, match="ALLOW_UNSIGNED"):
        load_function("ingest")

    monkeypatch.setenv("ALLOW_UNSIGNED", "yes")
    with pytest.raises(ConfigurationError):
        load_function("ingest")


def test_explicit_unsigned_mode_accepts_unsigned_deliveries(monkeypatch, queues):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.delenv("WEBHOOK_SECRET_ARN", raising=False)
    monkeypatch.setenv("ALLOW_UNSIGNED", "true")
    app = load_function("ingest")
    status, answer = deliver(app, BODY, {"content-type": "application/json"})

    assert status == 202, answer
    assert len(drain(queues["sqs"], queues["queue_url"])) == 1


def test_rejected_request_logs_no_secret_and_no_expected_signature(
    capsys, monkeypatch, queues, webhook_secrets
):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", webhook_secrets["arn"])
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    # A service name of its own, so that the Powertools logger writes to this test's stdout.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"ingest-log-{uuid.uuid4().hex}")
    app = load_function("ingest")
    status, _ = deliver(app, BODY, {SIGNATURE_HEADER: sign(BODY, "forged")})

    assert status == 401
    logged = "".join(capsys.readouterr())
    assert "delivery answered" in logged  # the log is captured, so its absence below means something
    for secret in webhook_secrets["values"]:
        assert secret not in logged
        assert sign(BODY, secret) not in logged


# --- events for `sam local invoke` -----------------------------------------------------------------


def apigw_event(sample_name: str) -> dict:
    """The API Gateway HTTP API event that carries ``events/<sample_name>``, signed with DEMO_SECRET."""
    sample = load_event(sample_name)
    headers = {"content-type": "application/json", "user-agent": "Visma-Webhook-Dispatcher/1.0"}
    if isinstance(sample, dict) and set(sample) == {"headers", "body"}:
        headers |= sample["headers"]
        sample = sample["body"]
    body = json.dumps(sample, separators=(",", ":")).encode()
    headers[SIGNATURE_HEADER] = sign(body, DEMO_SECRET)
    event = http_api_event(body, headers, source_ip=DISPATCHER_IP)
    context = event["requestContext"]
    context["requestId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"visma-webhooks/events/{sample_name}"))
    context["time"], context["timeEpoch"] = "24/Nov/2025:16:00:00 +0000", 1764000000000
    return event


def write_apigw_events() -> None:
    """Regenerate the committed ``events/apigw-*.json`` files from the samples they carry."""
    for name, sample in APIGW_EVENTS.items():
        (EVENTS / name).write_text(json.dumps(apigw_event(sample), indent=2) + "\n")


@pytest.mark.parametrize("name", sorted(APIGW_EVENTS))
def test_committed_apigw_event_matches_its_sample(name):
    committed = json.loads((EVENTS / name).read_text())
    assert committed == apigw_event(APIGW_EVENTS[name]), (
        f"events/{name} is stale: regenerate it with "
        "python -c 'from tests.integration.test_ingest_handler import write_apigw_events as w; w()'"
    )


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("apigw-legacy-single.json", 1), ("apigw-legacy-grouped.json", 5), ("apigw-dispatcher.json", 1)],
)
def test_apigw_event_is_accepted_by_the_handler(name, accepted, monkeypatch, queues):
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name="local-demo", SecretString=json.dumps([DEMO_SECRET]))["ARN"]
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", arn)
    app = load_function("ingest")
    result = app.handler(json.loads((EVENTS / name).read_text()), LambdaContext("ingest"))

    assert result["statusCode"] == 202, result
    assert json.loads(result["body"])["accepted"] == accepted
    assert len(drain(queues["sqs"], queues["queue_url"])) == accepted


def test_binary_body_travels_base64_and_is_refused_as_not_utf8(ingest_app, webhook_secrets):
    body = b"\x80\x81[]"
    event = http_api_event(body, signed(body, webhook_secrets["values"][0]))
    assert event["isBase64Encoded"]
    result = ingest_app.handler(event, LambdaContext("ingest"))

    assert result["statusCode"] == 400
    assert "UTF-8" in json.loads(result["body"])["problems"][0]
