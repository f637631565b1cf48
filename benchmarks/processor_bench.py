"""Processor: the real handler on moto server (loopback) against the Visma sandbox at 50 ms latency.

Scenarios, measured in rotation after a warm-up invocation (token cached, connections open):

* ``one``: one record alone;
* ``batch``: a batch of ten notifications of ten distinct resources;
* ``sequential``: the same ten, one record per invocation (the sum of the ten invocations);
* ``shared``: a batch of ten notifications naming three resources.

Events are built from real ReceiveMessage results; succeeded records are deleted as the
event source mapping does. Visma calls are counted from the sandbox's request log, AWS
calls from botocore's ``before-send`` events of the function's clients.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from benchmarks.common import (
    FAKE_CREDENTIALS,
    QUIET_POWERTOOLS,
    REGION,
    SandboxProcess,
    client,
    create_queues,
    environ,
    median_ms,
)
from visma_webhooks.adapters.aws import SqsBatchSender
from visma_webhooks.adapters.budget_store import TENANTS_SEEN_KEY
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.queueing import enqueue, notification_message
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext, sqs_event

if TYPE_CHECKING:
    from types_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef, MessageTypeDef

LATENCY = 0.05
ROUNDS = 5
TENANT = "1262489"
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret"
TARGET_RATIO = 1.5
TARGET_REQUESTS = 4
SEEN = "UpdateItem tenants#seen"  # the tenant added for the reconciler, once per window and instance
SCENARIOS = ("one", "batch", "sequential", "shared")
TABLE = "bench-idempotency"


def _snake(operation: str) -> str:
    """``PutItem`` → ``put_item``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _dynamodb(calls: Counter[str], tenants_seen: int = 0) -> dict[str, int]:
    """``{"dynamodb.PutItem": 1, "sqs.…": 1}`` → ``{"PutItem": 1}``, by operation name; the
    updates of ``tenants#seen`` (``tenants_seen`` of the UpdateItem calls) on their own."""
    made = {k.split(".", 1)[1]: v for k, v in calls.items() if k.startswith("dynamodb.") and v}
    if tenants_seen:
        made["UpdateItem"] = made.get("UpdateItem", 0) - tenants_seen
        made[SEEN] = tenants_seen
    return {op: n for op, n in sorted(made.items()) if n}


def _on_fresh_keys(params: dict[str, Any], table: str, prefix: str) -> dict[str, Any]:
    """A captured request on ``table``, every item's key prefixed with ``prefix``.

    A transaction's items are rewritten one by one; the idempotency token botocore filled
    in is dropped (a replay is a request of its own).
    """
    request = copy.deepcopy(params)
    request.pop("ClientRequestToken", None)
    targets = [entry for item in request.get("TransactItems", []) for entry in item.values()]
    for target in targets or [request]:
        target["TableName"] = table
        for field in ("Item", "Key"):
            if field in target:
                target[field]["id"] = {"S": f"{prefix}#{target[field]['id']['S']}"}
    return request


def _notifications(count: int, resources: int) -> list[Notification]:
    run = uuid.uuid4().hex[:8]
    return [
        Notification(
            notification_id=f"bench-{run}-{i}",
            tenant_id=TENANT,
            event="customer_changed",
            resource_path=f"/v1/customer/{run}-{i % resources}",
            occurred_at=datetime.now(UTC),
            source_format="legacy",
            raw={"notificationId": f"bench-{run}-{i}", "contextId": TENANT, "event": "customer_changed"},
        )
        for i in range(count)
    ]


def run(endpoint: str, rounds: int = ROUNDS, latency: float = LATENCY) -> dict[str, Any]:
    with (
        environ({**FAKE_CREDENTIALS, **QUIET_POWERTOOLS, "AWS_ENDPOINT_URL": endpoint}),
        SandboxProcess(
            "--latency", str(latency), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET
        ) as sandbox,
    ):
        return _run(endpoint, sandbox, rounds, latency)


def _run(endpoint: str, sandbox: SandboxProcess, rounds: int, latency: float) -> dict[str, Any]:
    queues = create_queues(endpoint, "bench-processor")
    ddb = client("dynamodb", endpoint)
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )
    secret_arn = client("secretsmanager", endpoint).create_secret(
        Name="bench-visma-client",
        SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    )["ARN"]
    env = {
        "QUEUE_URL": queues["queue_url"],
        "IDEMPOTENCY_TABLE": TABLE,
        "VISMA_API_BASE_URL": sandbox.url,
        "VISMA_TOKEN_URL": sandbox.token_url,
        "VISMA_CLIENT_SECRET_ARN": secret_arn,
        "HANDLER_MODULES": "benchmarks.bench_handlers",
        "MAX_RECEIVE_COUNT": "5",
        "RETRY_BASE_SECONDS": "10",
        "FEEDBACK_SOURCE": "visma-webhooks-bench",
    }
    with environ(env):
        return _Bench(load_function("processor"), queues["queue_url"], endpoint, sandbox).measure(
            rounds, latency
        )


def requests_per_notification(calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """DynamoDB requests per notification by operation, from each scenario's last round.

    ``batch``, ``shared`` and ``sequential`` are averages over their ten notifications (the
    budget's chunk, taken every few notifications, included); ``alone`` lists the distinct
    breakdowns of the ten single-record invocations of ``sequential`` (with and without a
    chunk taken) and how many invocations had each.
    """
    result: dict[str, Any] = {}
    for name in ("batch", "shared", "sequential"):
        total: Counter[str] = Counter()
        for made in calls[name]["dynamodb_per_invocation"]:
            total.update(made)
        count = calls[name]["notifications"]
        result[name] = {op: round(n / count, 2) for op, n in sorted(total.items())}
        result[name]["total"] = round(sum(total.values()) / count, 2)
    breakdowns = Counter(
        json.dumps(made, sort_keys=True) for made in calls["sequential"]["dynamodb_per_invocation"]
    )
    result["alone"] = [
        {"requests": json.loads(made), "total": sum(json.loads(made).values()), "invocations": n}
        for made, n in sorted(breakdowns.items(), key=lambda item: sum(json.loads(item[0]).values()))
    ]
    return result


def _breakdown(requests: dict[str, Any]) -> str:
    """``{"PutItem": 0.2, "TransactWriteItems": 2.0, "total": 2.2}`` → ``2 TransactWriteItems + 0.2 PutItem``."""
    by_count = sorted(((n, op) for op, n in requests.items() if op != "total"), key=lambda x: (-x[0], x[1]))
    return " + ".join(f"{n:g} {op}" for n, op in by_count)


class _Bench:
    def __init__(self, app: Any, queue_url: str, endpoint: str, sandbox: SandboxProcess):
        self.app = app
        self.queue_url = queue_url
        self.endpoint = endpoint
        self.sandbox = sandbox
        self.sqs = client("sqs", endpoint)
        self.arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.aws: Counter[str] = Counter()
        for aws_client in (app.sqs_client(), app._dynamodb):  # the SQS client is made on first use
            aws_client.meta.events.register("before-send", self._count_aws)
        self.captured: list[tuple[str, str, dict[str, Any]]] | None = None
        self.tenants_seen = 0  # UpdateItem calls adding the tenant to tenants#seen
        app._dynamodb.meta.events.register("provide-client-params.dynamodb", self._capture)
        self.failures: list[str] = []

    def _count_aws(self, request: Any, **kwargs: Any) -> None:
        self.aws[kwargs["event_name"].split(".", 1)[1]] += 1

    def _event(self, notifications: list[Notification]) -> dict[str, Any]:
        messages = [notification_message(i, n) for i, n in enumerate(notifications)]
        enqueue(SqsBatchSender(self.sqs, self.queue_url), messages)
        received: list[MessageTypeDef] = []
        for _ in range(20):
            if len(received) >= len(messages):
                break
            received += self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, len(messages) - len(received)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                VisibilityTimeout=60,
            ).get("Messages", [])
        if len(received) != len(messages):
            raise RuntimeError(f"received {len(received)} of {len(messages)} messages")
        return sqs_event(received, self.arn, REGION)

    def _invoke(self, event: dict[str, Any]) -> float:
        with contextlib.redirect_stdout(io.StringIO()):  # Powertools flushes EMF every 100 metrics
            start = time.perf_counter()
            response = self.app.handler(event, LambdaContext("processor", 30))
            elapsed = time.perf_counter() - start
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        self.failures += sorted(failed)
        entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
            for i, r in enumerate(event["Records"])
            if r["messageId"] not in failed
        ]
        if entries:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return elapsed

    def scenario(self, name: str) -> tuple[float, dict[str, Any]]:
        """Run one scenario: (seconds in the handler, calls made)."""
        notifications = _notifications(1 if name == "one" else 10, 3 if name == "shared" else 10)
        events = (
            [self._event([n]) for n in notifications]
            if name == "sequential"
            else [self._event(notifications)]
        )
        seen = len(self.sandbox.requests)
        self.aws.clear()
        per_invocation: list[dict[str, int]] = []
        elapsed, cpu = 0.0, time.process_time()
        for event in events:
            before, seen_before = Counter(self.aws), self.tenants_seen
            elapsed += self._invoke(event)
            per_invocation.append(_dynamodb(self.aws - before, self.tenants_seen - seen_before))
        cpu = time.process_time() - cpu
        visma = Counter(
            "token" if r["path"].endswith("/connect/token") else f"{r['method']} {r['path'].split('/')[2]}"
            for r in self.sandbox.requests[seen:]
        )
        return elapsed, {
            "cpu_ms": round(cpu * 1000, 1),
            "notifications": len(notifications),
            "distinct_resources": len({n.resource_path for n in notifications}),
            "visma": dict(visma),
            "aws": dict(self.aws),
            "dynamodb_per_invocation": per_invocation,
        }

    def _capture(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        if model.name == "UpdateItem" and params.get("Key") == TENANTS_SEEN_KEY:
            self.tenants_seen += 1
        if self.captured is not None:
            self.captured.append((threading.current_thread().name, model.name, copy.deepcopy(params)))

    def emulator_floor(self, calls: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
        """The DynamoDB requests of one batch of ten, replayed on moto without Visma or the processor.

        Each record's requests (as its thread made them, in order, on fresh keys of its own in
        a table of their own, transactions included) run once alone and then all ten records'
        from ten threads. Every condition holds on those keys as it did for the processor
        (``refused`` counts any that did not). moto serves them one at a time, so the second
        figure is a floor under the batch time on this machine that has nothing to do with
        the processor's own concurrency.
        """
        table = TABLE + "-replay"
        ddb = client("dynamodb", self.endpoint)
        with contextlib.suppress(ddb.exceptions.ResourceInUseException):
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        per_thread: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for thread, operation, params in calls:
            per_thread.setdefault(thread, []).append((operation, params))
        records = list(per_thread.values())
        clients = [client("dynamodb", self.endpoint) for _ in records]

        refused: Counter[str] = Counter()

        def replay(k: int, run: str) -> None:
            for operation, params in records[k]:
                request = _on_fresh_keys(params, table, f"{run}#{k}")
                try:
                    getattr(clients[k], _snake(operation))(**request)
                except ClientError as exc:  # a condition that held for the processor: not a faithful replay
                    refused[f"{operation}: {exc.response.get('Error', {}).get('Code')}"] += 1

        replay(0, "warm-" + uuid.uuid4().hex[:8])
        one, batch = [], []
        for _ in range(3):
            run = uuid.uuid4().hex[:8]
            start = time.perf_counter()
            replay(1 % len(records), run)
            one.append(time.perf_counter() - start)
            run = uuid.uuid4().hex[:8]
            start = time.perf_counter()
            with ThreadPoolExecutor(len(records)) as pool:
                list(pool.map(replay, range(len(records)), [run] * len(records)))
            batch.append(time.perf_counter() - start)
        return {
            "records": len(records),
            "dynamodb_calls_per_record": round(len(calls) / max(1, len(records)), 1),
            "dynamodb_calls": dict(Counter(operation for _, operation, _ in calls)),
            "one_record_replayed_ms": median_ms(one),
            "batch_replayed_from_threads_ms": median_ms(batch),
            "refused": dict(refused),
        }

    def measure(self, rounds: int, latency: float) -> dict[str, Any]:
        self.scenario("one")  # warm: secret read, token fetched, connections open
        self.scenario("batch")
        token_before = sum(1 for r in self.sandbox.requests if r["path"].endswith("/connect/token"))
        times: dict[str, list[float]] = {s: [] for s in SCENARIOS}
        calls: dict[str, dict[str, Any]] = {}
        for i in range(rounds):
            for name in SCENARIOS[i % len(SCENARIOS) :] + SCENARIOS[: i % len(SCENARIOS)]:
                elapsed, made = self.scenario(name)
                times[name].append(elapsed)
                calls[name] = made
        requests = self.sandbox.requests
        tokens = sum(1 for r in requests if r["path"].endswith("/connect/token"))
        processed = 2 + 10 + rounds * (1 + 10 + 10 + 10)  # warm-up included
        one, batch = median_ms(times["one"]), median_ms(times["batch"])
        ratio = batch / one
        shared = calls["shared"]
        shared_gets = shared["visma"].get("GET customer", 0)
        per_notification = {
            name: round(
                sum(v for k, v in c["visma"].items() if k != "token") / c["notifications"],
                2,
            )
            for name, c in calls.items()
        }
        self.captured = []  # one more batch, to replay its DynamoDB requests without the processor
        self.scenario("batch")
        captured, self.captured = self.captured, None
        feedback = Counter(f["notificationId"] for f in self.sandbox.feedback)
        floor = self.emulator_floor(captured)
        dynamodb = requests_per_notification(calls)
        average = dynamodb["batch"]["total"]
        return {
            "rounds": rounds,
            "visma_latency_ms": latency * 1000,
            "handler_ms": {name: median_ms(t) for name, t in times.items()},
            "batch_vs_one": round(ratio, 3),
            "sequential_vs_batch": round(median_ms(times["sequential"]) / batch, 2),
            "calls_last_round": calls,
            "visma_calls_per_notification": per_notification,
            "tokens": {
                "total": tokens,
                "during_measurement": tokens - token_before,
                "notifications": processed,
            },
            "failed_records": self.failures[:10],
            "dynamodb_requests_per_notification": dynamodb,
            "aws_emulator": floor,
            "emulator_share_of_batch": round(floor["batch_replayed_from_threads_ms"] / batch, 2),
            "feedback_posted_more_than_once": sorted(k for k, v in feedback.items() if v > 1)[:10],
            "targets": {
                f"DynamoDB requests per notification <= {TARGET_REQUESTS} (batch of 10, budget included)": {
                    "value": f"{average} ({_breakdown(dynamodb['batch'])})",
                    "met": average <= TARGET_REQUESTS,
                },
                f"batch of 10 <= {TARGET_RATIO}x one record": {
                    "value": f"{ratio:.2f}x ({batch:.0f} vs {one:.0f} ms)",
                    "ratio": round(ratio, 3),
                    "met": ratio <= TARGET_RATIO,
                },
                "GETs = distinct resources": {
                    "value": f"{shared_gets} GETs for {shared['distinct_resources']} resources",
                    "met": shared_gets == shared["distinct_resources"]
                    and calls["batch"]["visma"].get("GET customer", 0)
                    == calls["batch"]["distinct_resources"],
                },
                "Visma calls per notification <= 2 + amortised tokens": {
                    "value": f"{max(per_notification.values())} + {tokens}/{processed} tokens",
                    "met": max(per_notification.values()) <= 2 and tokens <= 1,
                },
            },
        }
