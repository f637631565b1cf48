"""The Powertools stage guard on moto: stage calls must not pile up hooks on the shared client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools.shared import user_agent

from visma_webhooks.adapters.dynamodb import PowertoolsStageGuard
from visma_webhooks_local.stack.lambda_events import LambdaContext


def test_stage_calls_do_not_pile_up_client_hooks(idempotency_table, monkeypatch):
    """Each stage call used to make a DynamoDBPersistenceLayer, whose ``__init__`` registers a
    User-Agent hook on the client it is given.

    On the client shared by the whole warm container the hooks piled up: every DynamoDB
    request ran one hook per stage since the cold start (CPU growing without bound).
    """
    registered: list[object] = []
    real = user_agent.register_feature_to_client

    def counting(client, feature):
        if client is idempotency_table:
            registered.append(feature)
        return real(client=client, feature=feature)

    monkeypatch.setattr(user_agent, "register_feature_to_client", counting)
    for invocation in range(3):  # a guard per invocation, as the processor makes them
        guard = PowertoolsStageGuard("idempotency", idempotency_table, 3600, LambdaContext("processor", 30))
        for stage in range(10):
            result, ran = guard.once(f"stage#{invocation}-{stage}", lambda: {"ok": True})
            assert (result, ran) == ({"ok": True}, True)

    assert len(registered) <= 1, f"{len(registered)} User-Agent hooks registered for 30 stages"


def test_concurrent_stage_keys_stay_apart(idempotency_table):
    """Copies of one template: each call's key prefix is its own, also across threads."""
    guard = PowertoolsStageGuard("idempotency", idempotency_table, 3600, LambdaContext("processor", 30))

    def run(i: int) -> tuple[dict, bool]:
        return guard.once(f"key-{i}", lambda: {"i": i})

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(run, range(16)))
    again = [guard.once(f"key-{i}", lambda: {"i": -1}) for i in range(16)]

    assert first == [({"i": i}, True) for i in range(16)]
    assert again == [({"i": i}, False) for i in range(16)]
