"""A copy that finds its notification (or its resource) held by another worker: it waits, and never posts "gave up".

Found by the soak (``make soak``): two copies of one notification are processed at once
(the dispatcher delivered it twice) or one worker was killed holding the notification.
The other copy used to retry within ``RETRY_BASE_SECONDS`` every time, so it used up its
receives in seconds, and on the last one it posted failure feedback, which could land
after the first copy's success feedback, leaving Visma showing a failure. Now it waits,
in a fresh copy (no receive used), at least as long as the holder may hold it.
"""

from __future__ import annotations

import logging
from typing import Any

from visma_webhooks.domain.batches import QueuedRecord
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.ordering import Lease
from visma_webhooks.domain.outcomes import Claim, ClaimStatus, Outcome
from visma_webhooks.domain.processing import Processor
from visma_webhooks.domain.settings import ProcessorSettings
from visma_webhooks.notification_handlers import Registry

HELD_FOR = 170.0  # what is left of the holder's invocation


class State:
    """The notification's state item, as another worker left it."""

    def __init__(self, claim: Claim):
        self.result: Claim = claim
        self.finished: list[Any] = []
        self.noted: list[Any] = []

    def claim(self, *args: Any, **kwargs: Any) -> Claim:
        return self.result

    def checkpoint(self, *args: Any, **kwargs: Any) -> None:
        pass

    def finish(self, *args: Any, result: Any, **kwargs: Any) -> None:
        self.finished.append(result)

    def note(self, tenant_id: str, notification_id: str, result: Any) -> None:
        self.noted.append(result)


class Resources:
    def acquire(self, *args: Any) -> Lease:
        return Lease(False, held_for=HELD_FOR)

    def release(self, *args: Any) -> Any:
        return None


class Visma:
    client_id = "our-client"

    def __init__(self) -> None:
        self.feedback: list[dict[str, Any]] = []
        self.reserved = 0
        self.priorities: list[Any] = []

    def get(self, tenant_id: str, service: str, path: str, **kwargs: Any) -> Any:
        return {"id": path}

    def reserve(self, tenant_id: str, units: int, priority: Any = None) -> None:
        self.reserved += units
        self.priorities.append(priority)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def post_feedback(self, tenant_id: str, notification_id: str, **kwargs: Any) -> None:
        self.feedback.append({"notificationId": notification_id, **kwargs})


def record(receive_count: int) -> QueuedRecord:
    notification = Notification(
        notification_id="n-1",
        tenant_id="1262489",
        event="customer_changed",
        resource_path="/v1/customer/10001",
        source_format="legacy",
        raw={},
    )
    return QueuedRecord("m-1", notification.model_dump_json(), receive_count=receive_count)


def processor(visma: Visma, state: State) -> Processor:
    registry = Registry()
    registry.add(("*",), lambda n, r, c: "ran", name="h")
    settings = ProcessorSettings(max_receive_count=5, retry_base_seconds=10.0)
    return Processor(settings, visma, state, Resources(), registry, logging.getLogger("test"))


def test_the_last_receive_of_a_copy_held_elsewhere_waits_and_posts_no_feedback():
    visma = Visma()
    state = State(Claim(ClaimStatus.HELD, held_for=HELD_FOR))
    p = processor(visma, state)

    result = p.process(record(receive_count=5), p.batch())

    assert result.outcome is Outcome.WAITING
    assert result.wait
    assert not result.retry
    assert visma.feedback == []
    assert result.feedback is None
    assert [r.outcome for r in state.noted] == [Outcome.WAITING]


def test_a_copy_held_elsewhere_waits_at_least_as_long_as_the_holder_may_hold_it():
    p = processor(Visma(), State(Claim(ClaimStatus.HELD, held_for=HELD_FOR)))

    delays = [p.process(record(receive_count=n), p.batch()).retry_after for n in (1, 2, 5)]

    assert all(HELD_FOR < delay <= HELD_FOR + 2.0 for delay in delays), delays


def test_a_resource_held_by_another_notification_waits_and_gives_the_notification_back():
    visma = Visma()
    state = State(Claim(ClaimStatus.CLAIMED))
    p = processor(visma, state)

    result = p.process(record(receive_count=2), p.batch())  # a later copy: claims, then the lease

    assert result.outcome is Outcome.WAITING
    assert HELD_FOR < (result.retry_after or 0) <= HELD_FOR + 2.0
    assert [r.outcome for r in state.finished] == [Outcome.WAITING]  # the claim is given back
    assert visma.feedback == []
