"""A notification's outcome record, read back as ``status``, ``inspect``, the demo and the soak see it."""

from __future__ import annotations

import pytest

from visma_webhooks.adapters.notification_state import attr as _attr
from visma_webhooks.adapters.outcome_store import OutcomeRecord


def record(*steps: str | tuple[str, str], **fields: object) -> OutcomeRecord:
    """The record whose history holds ``steps``: a step, or (``duplicate``, the outcome it found)."""
    history = [{"step": s} if isinstance(s, str) else {"step": s[0], "found": s[1]} for s in steps]
    item = {"notification_id": "n-1", "outcome": history[-1]["step"] if history else None, "history": history}
    return OutcomeRecord.from_item(_attr({**item, **fields})["M"])


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (("received", "succeeded"), "succeeded"),
        (("received", "retrying", "received", "failed"), "failed"),
        # a re-delivery absorbed as a duplicate does not hide the outcome
        (("received", "succeeded", "received", ("duplicate", "succeeded")), "succeeded"),
        # a sibling copy that found the notification held appends a retry after the success
        (("received", "received", "succeeded", "retrying"), "succeeded"),
        # a crash between the notification's stage and its history write: only a duplicate tells
        (("received", "received", ("duplicate", "failed")), "failed"),
        (("received", "retrying"), "retrying"),
        (("received", "throttled", "received"), "throttled"),
        # a replay with --force runs it again: the latest completion counts
        (("received", "failed", "received", "succeeded"), "succeeded"),
        (("received",), "in progress"),
    ],
)
def test_the_effective_outcome_is_read_from_the_history(steps, expected):
    assert record(*steps).effective_outcome == expected


def test_a_record_without_history_keeps_its_outcome():
    assert OutcomeRecord.from_item(
        _attr({"notification_id": "n-1", "outcome": "unhandled"})["M"]
    ).effective_outcome == ("unhandled")
    assert OutcomeRecord.from_item(_attr({"notification_id": "n-1"})["M"]).effective_outcome == "in progress"


def test_a_duplicate_description_is_never_parsed_for_the_outcome():
    """Only the step's ``found`` field names what a duplicate found; its text is for people."""
    found = record("received", "received", "duplicate")
    assert found.history[-1].found is None
    assert found.effective_outcome == "in progress"


def test_copies_and_final_steps_are_counted():
    outcome = record("received", "succeeded", "received", ("duplicate", "succeeded"), "received", "retrying")
    assert outcome.duplicates_absorbed == 1
    assert outcome.final_steps == ["succeeded", "duplicate"]
    assert outcome.completed
    assert not record("received", ("duplicate", "succeeded")).completed


def test_the_stored_fields_are_typed():
    outcome = record(
        "received",
        "succeeded",
        tenant_id="1262489",
        event="customer_changed",
        receive_count=2,
        attempts=3,
        handlers={"log": {"status": "succeeded", "result": "logged"}},
        feedback={"posted": True, "is_success": True},
        first_seen="2026-12-01T10:00:00.000+00:00",
        body="kept",
    )
    assert (outcome.tenant_id, outcome.event, outcome.receive_count, outcome.attempts) == (
        "1262489",
        "customer_changed",
        2,
        3,
    )
    assert outcome.handlers["log"]["result"] == "logged"
    assert outcome.feedback == {"posted": True, "is_success": True}
    assert outcome.history[0].step == "received"
    assert outcome.item["body"] == "kept"  # fields the record does not model stay readable
