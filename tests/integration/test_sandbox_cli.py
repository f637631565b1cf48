"""``visma-webhooks local``'s sandbox options reach the embedded sandbox it starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from visma_webhooks_local.cli import app
from visma_webhooks_local.cli import local as local_command
from visma_webhooks_local.stack.local import LocalStack
from visma_webhooks_local.stack.options import LocalOptions


def options_of(monkeypatch, *args: str) -> LocalOptions:
    """The options ``visma-webhooks local ARGS`` would run the stack with (nothing is started)."""
    seen: list[LocalOptions] = []
    monkeypatch.setattr(local_command, "run", lambda options, quiet: seen.append(options))
    result = CliRunner().invoke(app, ["local", *args])
    assert result.exit_code == 0, result.output
    return seen[0]


@pytest.fixture
def started(monkeypatch):
    """The sandbox that ``visma-webhooks local ARGS`` would start, running."""
    sandboxes = []

    def start(*args: str):
        stack = LocalStack(options_of(monkeypatch, *args))
        sandboxes.append(stack._start_sandbox("local-client", "secret"))
        return sandboxes[-1]

    yield start
    for sandbox in sandboxes:
        sandbox.stop()


def test_the_budget_options(started):
    sandbox = started("--sandbox-budget", "7", "--sandbox-window", "90")
    assert (sandbox.budget()["calls_per_window"], sandbox.rate_window) == (7, 90.0)


def test_without_them_the_default_budget_is_far_above_the_demo(started):
    budget = started().budget()
    assert (budget["calls_per_window"], budget["window_seconds"]) == (100_000, 3600.0)


def test_the_options_are_in_the_sandbox_help_panel():
    result = CliRunner().invoke(app, ["local", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    panel = result.output[result.output.index("Embedded sandbox") :]
    for option in (
        "--sandbox-budget",
        "--sandbox-window",
        "--sandbox-drop-webhooks",
        "--sandbox-seed",
    ):
        assert option in panel


def test_the_drop_share_and_the_seed(started):
    sandbox = started("--sandbox-drop-webhooks", "0.5", "--sandbox-seed", "9")
    assert sandbox.webhook_settings()["drop_rate"] == 0.5
    sandbox.set_resource("/v1/customer/C", {"number": "C"})

    for _ in range(20):
        sandbox.fire("/v1/customer/C", tenant="t")
    dropped = [r["state"] == "dropped" for r in sandbox.webhooks]
    again = started("--sandbox-drop-webhooks", "0.5", "--sandbox-seed", "9")
    again.set_resource("/v1/customer/C", {"number": "C"})
    for _ in range(20):
        again.fire("/v1/customer/C", tenant="t")
    assert dropped == [r["state"] == "dropped" for r in again.webhooks]
    assert 0 < sum(dropped) < 20
