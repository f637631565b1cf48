"""A notification's own outcome, read from its history as ``status`` and ``inspect`` show it."""

from __future__ import annotations

import pytest

from visma_webhooks_local.ops import effective_outcome


def history(*steps: str | tuple[str, str]) -> dict:
    entries = [{"step": s} if isinstance(s, str) else {"step": s[0], "detail": s[1]} for s in steps]
    return {"outcome": entries[-1]["step"] if entries else None, "history": entries}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (history("received", "succeeded"), "succeeded"),
        (history("received", "retrying", "received", "failed"), "failed"),
        # a re-delivery absorbed as a duplicate does not hide the outcome
        (
            history("received", "succeeded", "received", ("duplicate", "already processed: succeeded")),
            "succeeded",
        ),
        # a sibling copy that found the notification held appends a retry after the success
        (history("received", "received", "succeeded", "retrying"), "succeeded"),
        # a crash between the notification's stage and its history write: only a duplicate tells
        (history("received", "received", ("duplicate", "already processed: failed")), "failed"),
        (history("received", "retrying"), "retrying"),
        (history("received", "throttled", "received"), "throttled"),
        # a replay with --force runs it again: the latest completion counts
        (history("received", "failed", "received", "succeeded"), "succeeded"),
        ({"outcome": None, "history": [{"step": "received"}]}, "in progress"),
        ({"outcome": "unhandled"}, "unhandled"),
    ],
)
def test_effective_outcome(record, expected):
    assert effective_outcome(record) == expected
