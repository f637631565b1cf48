"""``visma-webhooks demo`` (what ``make demo`` runs), so that it cannot rot."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.e2e.conftest import COLUMNS, cli
from visma_webhooks_local.demo import EVENTS_DIR, plan, samples

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-demo")]


def test_the_plan_covers_every_sample_a_duplicate_an_echo_a_deletion_and_a_v3_order():
    the_plan = plan(samples())
    names = {path.name for path in samples()}
    assert {row.sample for row in the_plan.rows} == names
    assert not [n for n in names if n.startswith("apigw-")]  # Lambda events are not deliveries
    fixtures = {"apigw-legacy-single.json", "visma-resources.json", "visma-services.json"}
    assert fixtures <= {p.name for p in EVENTS_DIR.glob("*.json")}
    expected = [row.expected for row in the_plan.rows]
    assert expected.count("duplicate") >= 1
    assert expected.count("succeeded") >= 5
    [echo] = [row for row in the_plan.rows if row.expected == "echo"]
    assert echo.fetch is False
    deletions = [row for row in the_plan.rows if row.event.endswith("_deleted")]
    assert deletions
    assert all((row.expected, row.fetch) == ("succeeded", False) for row in deletions)
    v3 = [row for row in the_plan.rows if row.service == "salesorders" and row.event == "salesorder_updated"]
    assert v3
    assert all(row.fetch for row in v3)
    # a re-delivery goes in the second round, after its first copy settled
    assert all(row.copy == 2 for row in the_plan.rows if row.expected == "duplicate")
    assert {d.name for d in the_plan.again} == {row.sample for row in the_plan.rows if row.copy == 2}


def test_demo_sends_every_sample_and_every_notification_reaches_its_expected_outcome(tmp_path):
    cwd, temp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    temp.mkdir()
    result = subprocess.run(  # noqa: S603
        [*cli(), "demo"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": COLUMNS, "TMPDIR": str(temp)},
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = plan(samples()).rows
    assert f"✓ all {len(rows)} notifications reached their expected outcome" in result.stdout
    assert result.stdout.count("HTTP 202") == len({row.sample for row in rows})
    lines = result.stdout.splitlines()
    for row in rows:
        [line] = [
            line
            for line in lines
            if row.notification_id in line
            and row.sample in line
            and re.search(rf"│ {row.expected} +│ {row.expected} +│", line)
        ]
        assert {"succeeded": "✓ success", "echo": "none", "duplicate": "none again (dedup)"}[
            row.expected
        ] in line
        if row.fetch is not None:  # fetched from its own service, or not at all
            assert (f"│ {row.service} " in line) is row.fetch, line
    assert not list(cwd.iterdir())  # the demo leaves nothing behind in the working directory
    assert not list(temp.iterdir())  # nor its work directory, once every notification reached its outcome
