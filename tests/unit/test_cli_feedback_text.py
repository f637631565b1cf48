"""How the CLI words a notification's feedback: in the live lines and in ``inspect``."""

from __future__ import annotations

import pytest
from rich.text import Text

from visma_webhooks_local.cli.rendering import feedback_text as _feedback_text


def plain(markup: str) -> str:
    return Text.from_markup(markup).plain


@pytest.mark.parametrize(
    ("feedback", "outcome", "line", "field"),
    [
        ({"posted": True, "is_success": True}, "succeeded", "feedback posted ✓ success", "posted ✓ success"),
        ({"posted": True, "is_success": False}, "failed", "feedback posted ✗ failure", "posted ✗ failure"),
        ({"posted": True, "is_success": True}, "duplicate", "feedback already posted", "already posted"),
        (
            {"posted": False, "error": "HTTP 503"},
            "retrying",
            "feedback not posted HTTP 503",
            "not posted HTTP 503",
        ),
        (None, "unhandled", "no feedback", "no feedback"),
    ],
)
def test_feedback_text_in_a_live_line_and_in_the_inspect_field(feedback, outcome, line, field):
    assert plain(_feedback_text(feedback, outcome)) == line
    assert plain(_feedback_text(feedback, outcome, label="")) == field
