"""The local webhook endpoint: requests to the real ingest function, and what it refuses as API Gateway would."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import pytest
import requests

from tests.conftest import drain
from visma_webhooks.domain.signature import SIGNATURE_HEADER, sign
from visma_webhooks_local.stack.functions import FunctionPool, load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext, http_api_event
from visma_webhooks_local.stack.webhook_server import MAX_PAYLOAD_BYTES, WebhookServer


@pytest.fixture
def server(ingest_app):
    delivered = []

    def observe(status, body):
        delivered.append((status, body))

    ingest = FunctionPool([ingest_app], "IngestFunction", 10)  # as the local stack invokes it
    running = WebhookServer(ingest.invoke, observe=observe).start()
    running.delivered = delivered
    yield running
    running.stop()


def item(nid: str) -> dict:
    return {
        "notificationId": nid,
        "contextId": "1262489",
        "event": "customer_changed",
        "resourceUri": "https://api.finance.visma.net/v1/customer/10001",
    }


def raw_request(server: WebhookServer, method: str, path: str, body: bytes = b"", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.endheaders(body or None)
    response = connection.getresponse()
    result = response.status, response.read()
    connection.close()
    return result


def test_a_signed_delivery_reaches_the_queue_through_the_ingest_function(server, queues, webhook_secrets):
    body = json.dumps([item("00000000-0000-4000-8000-000000000001")]).encode()
    response = requests.post(
        server.url,
        data=body,
        headers={
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(body, webhook_secrets["values"][0]),
        },
        timeout=10,
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert len(drain(queues["sqs"], queues["queue_url"])) == 1
    assert server.delivered == [(202, response.json())]


def test_a_chunked_body_arrives_whole(server, queues, webhook_secrets):
    body = json.dumps([item("00000000-0000-4000-8000-000000000002")]).encode()
    response = requests.post(
        server.url,
        data=iter([body[:10], body[10:]]),  # requests sends an iterator chunked
        headers={
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(body, webhook_secrets["values"][0]),
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "message"),
    [
        ("POST", "/webhooks/other", {"Content-Length": "2"}, 404, "Not Found"),
        ("GET", "/webhooks/visma", {}, 404, "Not Found"),
        (
            "POST",
            "/webhooks/visma",
            {"Content-Length": str(MAX_PAYLOAD_BYTES + 1)},
            413,
            "Request Entity Too Large",
        ),
        ("POST", "/webhooks/visma", {"Content-Length": "-5"}, 400, "Bad Request"),
        ("POST", "/webhooks/visma", {"Content-Length": "many"}, 400, "Bad Request"),
    ],
)
def test_what_api_gateway_refuses_never_reaches_the_function(
    server, queues, method, path, headers, status, message
):
    body = b"{}" if headers.get("Content-Length") == "2" else b""
    answer = raw_request(server, method, path, body, headers)
    assert answer == (status, json.dumps({"message": message}, separators=(",", ":")).encode())
    assert server.delivered == []
    assert drain(queues["sqs"], queues["queue_url"]) == []


def test_a_function_that_fails_is_a_500_and_is_reported():
    def fail(event):
        raise RuntimeError("boom")

    seen = []
    running = WebhookServer(fail, observe=lambda status, body: seen.append((status, body))).start()
    try:
        response = requests.post(running.url, data=b"[]", timeout=10)
    finally:
        running.stop()
    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
    assert seen == [(500, None)]


def test_ingest_instances_in_one_process_share_the_event_handlers_current_event(ingest_app):
    """Why the local stack runs one ingest invocation at a time: Powertools keeps the event on its class."""
    other = load_function("ingest")
    event = http_api_event(b"[]", {}, path="/webhooks/visma", source_ip="127.0.0.1")
    ingest_app.handler(event, LambdaContext("IngestFunction", 10))
    assert other.app.current_event.raw_event is ingest_app.app.current_event.raw_event


def test_the_pool_runs_one_invocation_at_a_time_whatever_its_instances():
    running, seen, lock = 0, [], threading.Lock()
    both_started = threading.Barrier(2, timeout=2)

    def handler(event, context):
        nonlocal running
        with lock:
            running += 1
            seen.append(running)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_started.wait()  # the second invocation gets here only if it runs alongside
        with lock:
            running -= 1
        return {"statusCode": 202}

    instances = [ModuleType("one"), ModuleType("two")]
    for instance in instances:
        instance.handler = handler
    pool = FunctionPool(instances, "IngestFunction", 10)
    with ThreadPoolExecutor(max_workers=2) as threads:
        assert list(threads.map(pool.invoke, [{}, {}])) == [{"statusCode": 202}] * 2
    assert max(seen) == 1  # the second invocation started only after the first had finished
