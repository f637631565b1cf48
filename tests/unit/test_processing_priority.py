"""The reconciler's synthetic notifications spend the tenant's budget at background priority.

A backfill of thousands of records enqueues one synthetic notification per record; their
fetches must not take the calls that webhooks, which a user is waiting for, need.
"""

from __future__ import annotations

from typing import Literal

from tests.unit.test_processing_in_progress import State, Visma, processor
from visma_webhooks.domain.batches import QueuedRecord
from visma_webhooks.domain.budgets import Priority
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.outcomes import Claim, ClaimStatus


def record(source_format: Literal["dispatcher", "reconciled"], derived: bool) -> QueuedRecord:
    notification = Notification(
        notification_id="n-1",
        tenant_id="1262489",
        event="customer_changed",
        resource_path="/v1/customer/10001",
        source_format=source_format,
        derived_id=derived,
        raw={},
    )
    return QueuedRecord("m-1", notification.model_dump_json())


def test_a_synthetic_notification_reserves_its_fetch_at_background_priority():
    visma = Visma()
    p = processor(visma, State(Claim(ClaimStatus.HELD, held_for=1.0)))

    p.process(record("reconciled", derived=True), p.batch())

    assert visma.priorities == [Priority.BACKGROUND]
    assert visma.reserved == 1  # the fetch; no feedback for an id Visma never issued


def test_a_webhook_reserves_its_fetch_and_feedback_at_webhook_priority():
    visma = Visma()
    p = processor(visma, State(Claim(ClaimStatus.HELD, held_for=1.0)))

    p.process(record("dispatcher", derived=False), p.batch())

    assert visma.priorities == [Priority.WEBHOOK]
    assert visma.reserved == 2
