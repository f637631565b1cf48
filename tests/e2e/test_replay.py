"""Poison messages: the DLQ after maxReceiveCount, then ``replay`` (dry run, filters, limit, force).

The stack runs with ``--max-receive-count 2`` so that a poison message reaches the DLQ in
about a second; everything else is as in the pipeline tests.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import TENANT, LocalStackProcess, legacy_item, new_id, wait_for
from visma_webhooks.domain.parsing import parse_delivery
from visma_webhooks.domain.queueing import notification_message
from visma_webhooks.domain.resources import ResourceRules

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-replay")]

OTHER_TENANT = "7730011"
POISON = "/v1/*/poison-*"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox):
    running = LocalStackProcess(
        tmp_path_factory.mktemp("replay"), sandbox, "--max-receive-count", "2"
    ).start()
    yield running
    code = running.stop()
    assert code == 0, f"visma-webhooks local exited {code} on SIGTERM:\n{running.log()}"


def dlq_attributes(stack: LocalStackProcess) -> list[dict[str, str]]:
    """The DLQ's messages (their attributes), each made visible again at once."""
    messages = stack.sqs.receive_message(
        QueueUrl=stack.state.dlq_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return [{k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()} for m in messages]


def replay(stack: LocalStackProcess, *args: str) -> str:
    return stack.run("replay", *args).stdout


def moved(output: str) -> int:
    line = next(line for line in output.splitlines() if "moved to the queue" in line or "would move" in line)
    return int(line.split("│")[-2].strip())


def test_poison_messages_reach_the_dlq_and_replay_brings_them_back_once_visma_is_fixed(stack):
    poisons = {
        new_id(): ("customer", TENANT),
        new_id(): ("supplier", TENANT),
        new_id(): ("customer", OTHER_TENANT),
    }
    stack.sandbox.add_rule(POISON, status=500)
    for nid, (entity, tenant) in poisons.items():
        item = legacy_item(nid, f"{entity}/poison-{nid[:8]}", tenant=tenant)
        assert stack.post([item]).status_code == 202

    wait_for(lambda: stack.depth("dlq") == 3 and stack.depth("queue") == 0, 60, "three messages on the DLQ")
    for nid in poisons:
        record = stack.record(nid)
        assert record.attempts == 2  # maxReceiveCount receives, then SQS moved it
        assert [h.step for h in record.history] == ["received", "retrying", "received", "retrying"]
        # the failure notice went out on the last receive, before the DLQ
        assert [f["isSuccess"] for f in stack.feedback(nid)] == [False]
        assert "gave up after 2 attempts" in stack.feedback(nid)[0]["description"]
        assert stack.runs()[nid] == 0
        shown = json.loads(stack.run("inspect", nid, "--json").stdout)
        assert shown["where"].startswith("in the DLQ")
    assert {a["notification_id"] for a in dlq_attributes(stack)} == set(poisons)

    # A dry run moves nothing and changes nothing.
    before = {nid: stack.record(nid) for nid in poisons}
    dry = replay(stack, "--dry-run")
    assert "dry run: nothing moved" in dry
    assert moved(dry) == 3
    assert stack.depth("dlq") == 3
    assert stack.depth("queue") == 0
    assert {nid: stack.record(nid) for nid in poisons} == before
    filtered = replay(stack, "--dry-run", "--event", "customer_*", "--tenant", TENANT)
    assert moved(filtered) == 1

    stack.sandbox.clear_rules()  # Visma is fixed

    # Filters: only the customer of the first tenant.
    [first] = [nid for nid, (entity, tenant) in poisons.items() if entity == "customer" and tenant == TENANT]
    assert moved(replay(stack, "--event", "customer_*", "--tenant", TENANT)) == 1
    assert stack.settled([first])[first].outcome == "succeeded"
    assert stack.depth("dlq") == 2
    assert first not in {a["notification_id"] for a in dlq_attributes(stack)}

    # A limit, then the rest.
    assert moved(replay(stack, "--limit", "1")) == 1
    wait_for(lambda: stack.depth("dlq") == 1, 10, "one message left on the DLQ")
    assert moved(replay(stack)) == 1
    records = stack.settled(poisons)
    assert stack.depth("dlq") == 0

    runs = stack.runs()
    for nid in poisons:
        assert records[nid].outcome == "succeeded"
        assert runs[nid] == 1
        assert [f["isSuccess"] for f in stack.feedback(nid)] == [False, True]
        shown = stack.run("inspect", nid).stdout
        assert "done (succeeded)" in shown
        assert shown.count("retrying") == 2  # the history keeps both failed receives


def test_a_replayed_copy_of_a_completed_notification_is_absorbed_unless_forced(stack):
    nid = new_id()
    body = json.dumps([legacy_item(nid, "customer/10001")]).encode()
    assert stack.post(body).status_code == 202
    stack.settled([nid])
    assert stack.runs()[nid] == 1

    # Copies of its message on the DLQ, as ingest enqueued it (as a redrive leaves a message
    # whose deletion failed after it was processed).
    [notification] = parse_delivery(body, {}, ResourceRules()).notifications
    message = notification_message(0, notification)
    attributes = {k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items()}
    for _ in range(2):
        stack.sqs.send_message(
            QueueUrl=stack.state.dlq_url, MessageBody=message.body, MessageAttributes=attributes
        )

    assert moved(replay(stack, "--limit", "1")) == 1
    record = stack.settled([nid], copies=2)[nid]
    assert record.history[-1].step == "duplicate"
    assert stack.runs()[nid] == 1
    assert len(stack.feedback(nid)) == 1

    forced = replay(stack, "--force")
    assert moved(forced) == 1
    assert "forced run id" in forced
    stack.settled([nid], copies=3)
    wait_for(lambda: stack.runs()[nid] == 2, 10, "the forced run of the handler")
    assert [f["isSuccess"] for f in stack.feedback(nid)] == [True, True]
    assert stack.depth("dlq") == 0


def test_inspect_of_an_unknown_notification_says_so_and_exits_1(stack):
    unknown = new_id()
    result = stack.run("inspect", unknown, check=False)
    assert result.returncode == 1
    assert f"no notification '{unknown}'" in result.stderr
    assert "never received" in result.stderr
