"""A copy that finds its notification held by another worker: it backs off, and never posts "gave up".

Found by the soak (``make soak``): two copies of one notification are processed at once
(the dispatcher delivered it twice) or one worker was killed holding the notification.
The other copy used to retry within ``RETRY_BASE_SECONDS`` every time, so it used up its
receives in seconds, and on the last one it posted failure feedback, which could land
after the first copy's success feedback, leaving Visma showing a failure.
"""

from __future__ import annotations

import logging
from typing import Any

from visma_webhooks.domain.errors import StageInProgress
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.outcomes import Outcome
from visma_webhooks.domain.processing import Processor, QueuedRecord
from visma_webhooks.domain.settings import ProcessorSettings
from visma_webhooks.notification_handlers import Registry


class HeldElsewhere:
    """Every stage is in progress in another worker."""

    def once(self, key: str, fn: Any) -> tuple[dict[str, Any], bool]:
        raise StageInProgress(key)


class Outcomes:
    def started(self, *args: Any) -> None:
        pass

    def finished(self, *args: Any) -> None:
        pass


class Visma:
    client_id = "our-client"

    def __init__(self) -> None:
        self.feedback: list[dict[str, Any]] = []

    def get(self, tenant_id: str, service: str, path: str) -> Any:
        return {"id": path}

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def post_feedback(self, tenant_id: str, notification_id: str, **kwargs: Any) -> None:
        self.feedback.append({"notificationId": notification_id, **kwargs})


class MemoryFingerprints:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], str] = {}

    def get(self, tenant_id: str, service: str, path: str) -> str | None:
        return self.values.get((tenant_id, service, path))

    def put(self, tenant_id: str, service: str, path: str, value: str) -> None:
        self.values[(tenant_id, service, path)] = value

    def forget(self, tenant_id: str, service: str, path: str) -> None:
        self.values.pop((tenant_id, service, path), None)


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


def processor(visma: Visma) -> Processor:
    registry = Registry()
    registry.add(("*",), lambda n, r, c: "ran", name="h")
    settings = ProcessorSettings(max_receive_count=5, retry_base_seconds=10.0)
    return Processor(
        settings,
        visma,
        HeldElsewhere(),
        Outcomes(),
        registry,
        logging.getLogger("test"),
        fingerprints=MemoryFingerprints(),
    )


def test_the_last_receive_of_a_copy_held_elsewhere_posts_no_feedback():
    visma = Visma()
    p = processor(visma)

    result = p.process(record(receive_count=5), p.batch())

    assert result.outcome is Outcome.RETRYING
    assert result.retry
    assert visma.feedback == []
    assert result.feedback is None


def test_a_copy_held_elsewhere_backs_off_exponentially():
    p = processor(Visma())

    delays = [p.process(record(receive_count=n), p.batch()).retry_after for n in (1, 2, 3, 4)]

    for n, delay in zip((1, 2, 3, 4), delays, strict=True):
        assert 0.8 * 10.0 * 2 ** (n - 1) <= delay <= 1.2 * 10.0 * 2 ** (n - 1)
