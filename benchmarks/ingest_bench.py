"""Ingest: the real handler against moto server on loopback, next to one bare SendMessageBatch.

The handler (warm: the secret is cached after a first delivery) gets signed legacy arrays
of 1, 10 and 100 notifications as API Gateway HTTP API events. The bare call sends the
same ten messages the handler would send, with the handler's own SQS client. SQS calls
are counted as the HTTP requests botocore sends (``before-send`` events), so retries count.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from typing import Any

from benchmarks.common import (
    FAKE_CREDENTIALS,
    QUIET_POWERTOOLS,
    client,
    create_queues,
    drain,
    environ,
    legacy_item,
    median_ms,
    signed,
)
from visma_webhooks.domain.parsing import parse_delivery
from visma_webhooks.domain.queueing import notification_message
from visma_webhooks.domain.resources import ResourceRules
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext, http_api_event

SIZES = (1, 10, 100)
ROUNDS = 25
SECRET = "bench-webhook-secret"
TARGET_RATIO = 1.5


def _delivery(n: int) -> tuple[bytes, dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    items = [legacy_item(f"bench-{run}-{i}", f"/v1/customer/{10000 + i}") for i in range(n)]
    body = json.dumps(items).encode()
    return body, signed(body, SECRET)


def _bare_entries() -> list[dict[str, Any]]:
    """The ten entries the handler sends for a delivery of ten, built by the same code."""
    body, headers = _delivery(10)
    delivery = parse_delivery(body, headers, ResourceRules())
    messages = [notification_message(i, n) for i, n in enumerate(delivery.notifications)]
    return [
        {
            "Id": m.id,
            "MessageBody": m.body,
            "MessageAttributes": {
                k: {"DataType": "String", "StringValue": v} for k, v in m.attributes.items()
            },
        }
        for m in messages
    ]


def run(endpoint: str, rounds: int = ROUNDS) -> dict[str, Any]:
    with environ({**FAKE_CREDENTIALS, **QUIET_POWERTOOLS, "AWS_ENDPOINT_URL": endpoint}):
        return _run(endpoint, rounds)


def _run(endpoint: str, rounds: int) -> dict[str, Any]:
    queues = create_queues(endpoint, "bench-ingest")
    secret_arn = client("secretsmanager", endpoint).create_secret(
        Name="bench-webhook-secret", SecretString=json.dumps([SECRET])
    )["ARN"]
    env = {
        "QUEUE_URL": queues["queue_url"],
        "DLQ_URL": queues["dlq_url"],
        "WEBHOOK_SECRET_ARN": secret_arn,
    }
    with environ(env):  # as Lambda does: the function's settings hold for its whole life
        return _measure(load_function("ingest"), queues, endpoint, rounds)


def _measure(app: Any, queues: dict[str, str], endpoint: str, rounds: int) -> dict[str, Any]:
    sqs = app._sqs
    sent: Counter[str] = Counter()

    def count(request: Any, **kwargs: Any) -> None:
        sent[kwargs["event_name"].rsplit(".", 1)[-1]] += 1

    sqs.meta.events.register("before-send.sqs", count)
    context = LambdaContext("ingest")

    def deliver(n: int) -> tuple[float, dict[str, int], dict[str, Any]]:
        body, headers = _delivery(n)
        event = http_api_event(body, headers)
        sent.clear()
        start = time.perf_counter()
        response = app.handler(event, context)
        elapsed = time.perf_counter() - start
        return elapsed, dict(sent), {"status": response["statusCode"], **json.loads(response["body"])}

    def bare() -> float:
        entries = _bare_entries()
        start = time.perf_counter()
        sqs.send_message_batch(QueueUrl=queues["queue_url"], Entries=entries)
        elapsed = time.perf_counter() - start
        drain(admin, queues["queue_url"])
        return elapsed

    admin = client("sqs", endpoint)
    for n in (1, 10):  # warm: secret fetched and cached, connections open
        deliver(n)
    bare()
    times: dict[str, list[float]] = {"bare": [], **{str(n): [] for n in SIZES}}
    calls: dict[str, list[dict[str, int]]] = {str(n): [] for n in SIZES}
    problems: list[str] = []
    jobs = ["bare", *map(str, SIZES)]
    for i in range(rounds):
        for job in jobs[i % len(jobs) :] + jobs[: i % len(jobs)]:
            if job == "bare":
                times["bare"].append(bare())
                continue
            elapsed, made, answer = deliver(int(job))
            times[job].append(elapsed)
            calls[job].append(made)
            if answer["status"] != 202 or answer.get("accepted") != int(job):
                problems.append(f"n={job}: {answer}")
            drain(admin, queues["queue_url"])  # every measurement starts from an empty queue

    bare_ms = median_ms(times["bare"])
    result: dict[str, Any] = {
        "rounds": rounds,
        "bare_send_message_batch_ms": bare_ms,
        "handler_ms": {n: median_ms(times[n]) for n in calls},
        "per_notification_ms": {n: round(median_ms(times[n]) / int(n), 3) for n in calls},
        "sqs_calls": {},
        "problems": problems[:10],
    }
    calls_ok = not problems
    for size, observed in calls.items():
        distinct = sorted({json.dumps(c, sort_keys=True) for c in observed})
        expected = math.ceil(int(size) / 10)
        ok = all(c == {"SendMessageBatch": expected} for c in observed)
        calls_ok = calls_ok and ok
        result["sqs_calls"][size] = {
            "expected": expected,
            "observed": [json.loads(d) for d in distinct],
            "met": ok,
        }
    ratio = median_ms(times["10"]) / bare_ms
    result["ratio_10_vs_bare"] = round(ratio, 3)
    result["targets"] = {
        "calls = ceil(n/10)": {
            "value": ", ".join(
                f"{c['observed'][0].get('SendMessageBatch') if len(c['observed']) == 1 else c['observed']}"
                f" for n={n}"
                for n, c in result["sqs_calls"].items()
            ),
            "met": calls_ok,
        },
        f"time(10) <= {TARGET_RATIO}x one bare batch": {
            "value": f"{ratio:.2f}x ({median_ms(times['10']):.1f} vs {bare_ms:.1f} ms)",
            "ratio": round(ratio, 3),
            "met": ratio <= TARGET_RATIO,
        },
    }
    return result
