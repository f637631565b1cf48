"""The pipeline through ``visma-webhooks local``: delivery, processing, feedback, failures, safety."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.conftest import CLIENT_ID, SECRET, TENANT, legacy_item, new_id, wait_for
from visma_webhooks.domain.signature import sign

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-pipeline")]


def test_legacy_batch_and_dispatcher_delivery_are_each_processed_once_with_feedback(stack, tmp_path):
    ids = [new_id() for _ in range(3)]
    batch = [
        legacy_item(ids[0], "customer/10001"),
        legacy_item(ids[1], "supplier/20002"),
        {
            **legacy_item(ids[2], "salesorder/SO/1287"),
            "resourceUri": None,
            "relativeResourceUri": "api/v1/salesorder/SO/1287",
        },
    ]
    del batch[2]["resourceUri"]
    legacy_file = tmp_path / "legacy.json"
    legacy_file.write_text(json.dumps(batch, indent=2))
    dispatcher_id, dispatcher_tenant = new_id(), "5f0c8c1e-2d4b-4f1a-9a59-0c6e7f3b2a10"
    envelope = {
        "headers": {
            "x-vwd-tenant-id": dispatcher_tenant,
            "x-vwd-notification-id": dispatcher_id,
            "x-vwd-event-id": new_id(),
            "x-vwd-webhook-timestamp": "1764000000250",
        },
        "body": {
            "Event": "Customer Changed",
            "EntityId": "10002",
            "ResourceUri": "https://api.finance.visma.net/v1/customer/10002",
        },
    }
    dispatcher_file = tmp_path / "dispatcher.json"
    dispatcher_file.write_text(json.dumps(envelope))

    sent = stack.run("send", str(legacy_file), str(dispatcher_file), "--url", stack.url, "--secret", SECRET)
    assert sent.stdout.count("HTTP 202") == 2, sent.stdout
    assert '"accepted":3' in sent.stdout
    assert '"accepted":1' in sent.stdout

    records = stack.settled([*ids, dispatcher_id])
    assert {nid: r.outcome for nid, r in records.items()} == dict.fromkeys([*ids, dispatcher_id], "succeeded")
    assert records[dispatcher_id].tenant_id == dispatcher_tenant
    assert records[dispatcher_id].event == "customer_changed"
    runs = stack.runs()
    for nid in [*ids, dispatcher_id]:
        assert runs[nid] == 1
        feedback = stack.feedback(nid)
        assert [f["isSuccess"] for f in feedback] == [True], feedback
    assert stack.feedback(dispatcher_id)[0]["tenant"] == dispatcher_tenant
    fetched = {r["path"] for r in stack.sandbox.requests if r["method"] == "GET"}
    assert {
        "/v1/customer/10001",
        "/v1/supplier/20002",
        "/api/v3/SalesOrders/SO/1287",  # a legacy sales order is fetched from SalesOrders V3
        "/v1/customer/10002",
    } <= fetched


def test_a_redelivered_batch_runs_no_handler_and_posts_no_feedback_again(stack):
    ids = [new_id(), new_id()]
    # resources no other test here processed (an unchanged one would skip the handlers)
    body = json.dumps(
        [
            legacy_item(ids[0], f"customer/e2e-{ids[0][:8]}"),
            legacy_item(ids[1], f"inventory/e2e-{ids[1][:8]}"),
        ]
    ).encode()
    assert stack.post(body).status_code == 202
    stack.settled(ids)

    again = stack.post(body)  # the dispatcher delivers the same bytes again
    assert again.status_code == 202
    assert again.json()["accepted"] == 2
    records = stack.settled(ids, copies=2)

    runs = stack.runs()
    for nid in ids:
        assert runs[nid] == 1
        assert len(stack.feedback(nid)) == 1
        # the second copy's claim is refused, so its history is one entry
        assert [h.step for h in records[nid].history] == ["received", "succeeded", "duplicate"]
    status = json.loads(stack.run("status", "--json").stdout)
    assert status["duplicates"] >= 2
    shown = stack.run("inspect", ids[0]).stdout
    assert "succeeded" in shown
    assert "absorbed as duplicates: 1" in shown


def test_a_transient_visma_failure_is_retried_until_it_recovers(stack):
    nid, path = new_id(), f"/v1/customer/flaky-{new_id()[:8]}"
    stack.sandbox.add_rule(path, status=503, times=2)
    assert stack.post([legacy_item(nid, path.removeprefix("/v1/"))]).status_code == 202

    record = stack.settled([nid])[nid]
    steps = [h.step for h in record.history]
    assert record.outcome == "succeeded"
    assert "retrying" in steps
    assert steps[-1] == "succeeded"
    assert record.attempts >= 2
    assert stack.runs()[nid] == 1
    assert [f["isSuccess"] for f in stack.feedback(nid)] == [True]
    statuses = [r["status"] for r in stack.sandbox.requests if r["path"] == path]
    assert statuses.count(503) == 2
    assert statuses[-1] == 200


def test_a_429_is_honoured_the_notification_waits_before_its_retry(stack):
    nid, path, tenant = new_id(), f"/v1/customer/busy-{new_id()[:8]}", f"throttled-{new_id()[:8]}"
    stack.sandbox.add_rule(path, status=429, retry_after=3, times=1)
    assert stack.post([legacy_item(nid, path.removeprefix("/v1/"), tenant=tenant)]).status_code == 202

    record = stack.settled([nid], timeout=40)[nid]
    assert record.outcome == "succeeded"
    assert "throttled" in [h.step for h in record.history]
    calls = [r for r in stack.sandbox.requests if r["path"] == path]
    assert [c["status"] for c in calls] == [429, 200]
    waited = calls[1]["time"] - calls[0]["time"]
    assert waited >= 3.0, f"retried {waited:.2f} s after a 429 with Retry-After: 3"
    assert stack.runs()[nid] == 1
    assert [f["isSuccess"] for f in stack.feedback(nid)] == [True]


def test_a_permanent_failure_is_not_retried_and_gets_failure_feedback(stack):
    nid, path = new_id(), f"/v1/customer/denied-{new_id()[:8]}"
    stack.sandbox.add_rule(path, 403)  # a 404 would be a deletion, which reaches the handlers
    assert stack.post([legacy_item(nid, path.removeprefix("/v1/"))]).status_code == 202

    record = stack.settled([nid])[nid]
    assert record.outcome == "failed"
    assert record.attempts == 1
    assert [r["status"] for r in stack.sandbox.requests if r["path"] == path] == [403]
    feedback = stack.feedback(nid)
    assert [f["isSuccess"] for f in feedback] == [False]
    assert "403" in feedback[0]["description"]
    assert stack.runs()[nid] == 0  # no resource, so no handler ran
    inspected = json.loads(stack.run("inspect", nid, "--json").stdout)
    assert inspected["where"] == "done (failed)"


def test_forged_and_unsigned_requests_are_answered_401_and_nothing_is_processed(stack):
    forged = [new_id() for _ in range(4)]
    body = json.dumps([legacy_item(forged[0])]).encode()
    attempts = {
        "unsigned": stack.post(body, secret=None),
        "signed with another key": stack.post(body, secret="not-the-secret"),
        "a valid signature of another body": stack.post(
            [legacy_item(forged[1])], secret=None, headers={"x-vwd-signature-v1": sign(body, SECRET)}
        ),
        "not base64": stack.post(
            [legacy_item(forged[2])], secret=None, headers={"x-vwd-signature-v1": "garbage=="}
        ),
        "the old header name": stack.post(
            [legacy_item(forged[3])], secret=None, headers={"x-vwd-signature": sign(body, SECRET)}
        ),
    }
    assert {name: r.status_code for name, r in attempts.items()} == dict.fromkeys(attempts, 401)
    assert all("x-vwd-signature-v1" in r.json()["message"] for r in attempts.values())

    genuine = new_id()
    assert stack.post([legacy_item(genuine)]).status_code == 202
    stack.settled([genuine])
    for nid in forged:
        assert stack.record(nid) is None
        assert stack.feedback(nid) == []
        assert stack.runs()[nid] == 0


class _Trap(BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self):  # pragma: no cover - reaching it is the failure
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_visma_is_only_called_at_the_configured_base_never_at_a_host_from_a_payload(stack):
    hits: list[str] = []
    trap = ThreadingHTTPServer(("127.0.0.1", 0), type("Trap", (_Trap,), {"hits": hits}))
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    try:
        trap_url = f"https://127.0.0.1:{trap.server_address[1]}/v1/customer/10001"
        hostile = [new_id(), new_id(), new_id()]
        genuine = new_id()
        response = stack.post(
            [
                legacy_item(hostile[0], uri=trap_url),
                legacy_item(hostile[1], uri="https://evil.example.com/API/controller/api/v1/customer/10001"),
                legacy_item(hostile[2], uri=f"http://127.0.0.1:{trap.server_address[1]}/v1/customer/10001"),
                legacy_item(genuine, "customer/10001"),
            ]
        )
        assert response.status_code == 202
        assert response.json()["accepted"] == 1
        assert {r["notificationId"] for r in response.json()["rejected"]} == set(hostile)
        stack.settled([genuine])

        assert hits == []
        for nid in hostile:
            assert stack.record(nid) is None
            inspected = json.loads(stack.run("inspect", nid, "--json").stdout)
            assert inspected["where"].startswith("in the DLQ (quarantined at ingest")
        allowed = re.compile(
            r"^/connect/token$|^/v1/webhooknotificationfeedback$|^/v1/[a-z]+/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?$"
            r"|^/api/v3/SalesOrders/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$"
        )
        requests_seen = stack.sandbox.requests
        assert requests_seen
        assert all(allowed.match(r["path"]) for r in requests_seen), requests_seen
        tokens = [r for r in requests_seen if r["path"] == "/connect/token"]
        assert tokens
        assert all(t["client_id"] == CLIENT_ID and t["status"] == 200 for t in tokens)
        assert any(t["tenant"] == TENANT for t in tokens)
    finally:
        trap.shutdown()
        trap.server_close()


def test_status_shows_the_queues_and_the_outcomes(stack):
    nid = new_id()
    assert stack.post([legacy_item(nid)]).status_code == 202
    stack.settled([nid])
    status = json.loads(stack.run("status", "--json").stdout)
    assert status["queue"]["visible"] == 0
    assert status["outcomes"]["succeeded"] >= 1
    assert status["dlq"]["visible"] == stack.depth("dlq")
    shown = stack.run("status").stdout
    assert "succeeded" in shown
    assert "DLQ" in shown
    wait_for(lambda: "feedback posted (success)" in stack.run("status").stdout, 5, "feedback counts")


def test_a_second_stack_on_the_same_state_file_is_refused(stack):
    second = stack.run("local", "--port", "0", check=False, timeout=30)
    assert second.returncode == 1
    assert f"a local stack is already running (pid {stack.process.pid}" in second.stderr
    assert stack.state.pid == stack.process.pid  # the running stack's state file is untouched
    assert stack.post([legacy_item(new_id())]).status_code == 202
