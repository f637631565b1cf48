"""The sandbox drops a share of its webhooks: recorded with the change, never delivered; seeded, repeatable."""

from __future__ import annotations

import json

import pytest

from tests.sandbox_support import TENANT, Receiver
from visma_webhooks_local.sandbox import VismaSandbox, WebhookConfig
from visma_webhooks_local.sandbox.__main__ import argument_parser, sandbox_from

CHANGES = 60


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def change_all(sb: VismaSandbox, count: int = CHANGES) -> list[str]:
    paths = [f"/v1/customer/D{i:03d}" for i in range(count)]
    for i, path in enumerate(paths):
        sb.set_resource(path, {"number": path.rsplit("/", 1)[1]})
        sb.fire(path, tenant=TENANT, changes={"name": f"change {i}"})
    return paths


def test_dropped_notifications_are_recorded_and_never_delivered(receiver):
    config = WebhookConfig(url=receiver.url, secrets=["s"], delay=0.0, drop_rate=0.25)
    with VismaSandbox(seed=11, webhooks=config) as sb:
        change_all(sb)
        records = sb.wait_for_webhooks(CHANGES)
        dropped = sb.dropped_webhooks
        assert 0 < len(dropped) < CHANGES
        delivered = receiver.wait(CHANGES - len(dropped))
        assert len(delivered) == CHANGES - len(dropped) == sum(r["state"] == "delivered" for r in records)
        sent_ids = {json.loads(raw)["notificationId"] for _, raw in delivered}
        assert not sent_ids & {d["notificationId"] for d in dropped}
        for entry in dropped:
            assert set(entry) == {
                "notificationId",
                "tenant",
                "service",
                "path",
                "event",
                "lastModifiedDateTime",
                "fired_at",
            }
            assert (entry["tenant"], entry["service"], entry["event"]) == (
                TENANT,
                "financials",
                "Customer Changed",
            )
            assert entry["lastModifiedDateTime"] == sb.resource(entry["path"])["lastModifiedDateTime"]


def test_a_seed_drops_the_same_notifications_each_run():
    def dropped_paths(seed: int) -> list[str]:
        with VismaSandbox(seed=seed, webhooks=WebhookConfig(drop_rate=0.3)) as sb:
            change_all(sb)
            return [d["path"] for d in sb.dropped_webhooks]

    first = dropped_paths(5)
    assert first == dropped_paths(5)
    assert first != dropped_paths(6)


def test_the_control_api_sets_the_share_and_the_seed(sandbox, http):
    url = sandbox.url + "/_sandbox/webhook-settings"

    def run() -> list[str]:
        settings = http.post(url, json={"drop_rate": 0.5, "seed": 3}, timeout=5).json()
        assert (settings["drop_rate"], settings["seed"]) == (0.5, 3)
        http.post(sandbox.url + "/_sandbox/reset", timeout=5)
        change_all(sandbox, 20)
        return [d["path"] for d in http.get(sandbox.url + "/_sandbox/dropped-webhooks", timeout=5).json()]

    first = run()
    assert 0 < len(first) < 20
    assert run() == first  # the seed restarts the draws
    assert [r["state"] for r in sandbox.webhooks].count("dropped") == len(first)


def test_deletions_and_write_backs_are_dropped_too(sandbox):
    sandbox.configure_webhooks(drop_rate=1.0)
    sandbox.set_resource("/v1/customer/X", {"number": "X"})
    sandbox.delete_resource("/v1/customer/X", notify=True, tenant=TENANT)
    [deletion] = sandbox.dropped_webhooks
    assert deletion["event"] == "Customer Deleted"
    assert deletion["lastModifiedDateTime"]


@pytest.mark.parametrize("body", [{"drop_rate": 1.5}, {"drop_rate": "some"}, {"seed": "x"}, {"seed": True}])
def test_bad_drop_settings_are_400(sandbox, http, body):
    response = http.post(sandbox.url + "/_sandbox/webhook-settings", json=body, timeout=5)
    assert response.status_code == 400


def test_the_command_line_sets_the_share():
    sandbox = sandbox_from(argument_parser().parse_args(["--drop-webhooks", "0.2", "--seed", "4"]))
    assert (sandbox.webhook_settings()["drop_rate"], sandbox.webhook_settings()["seed"]) == (0.2, None)
    with pytest.raises(ValueError, match="drop-webhooks"):
        sandbox_from(argument_parser().parse_args(["--drop-webhooks", "2"]))
