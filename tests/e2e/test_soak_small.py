"""The soak (``make soak``) at 200 notifications: the same run and the same invariants, in ``make test``.

``visma-webhooks local --no-processor`` and ``visma-webhooks process`` run as
subprocesses against a faulty Visma in this process; the processor is killed with
SIGKILL mid-batch three times. See :mod:`benchmarks.soak` for what is checked and why.
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from benchmarks.soak.cli import run
from benchmarks.soak.plan import RECORDED_RESULTS, SoakConfig

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-soak")]


def test_200_notifications_under_faults_duplicates_forgeries_and_kills_are_each_processed_once(tmp_path):
    committed = RECORDED_RESULTS.read_bytes()
    results = tmp_path / "soak-results.json"
    config = SoakConfig(
        notifications=200,
        kills=3,
        workdir=tmp_path / "work",
        keep=True,
        results=results,
        timeout=300,  # a guard against a hang: the run takes about 100 s on two busy cores
    )
    result = run(config, Console(width=150, highlight=False, force_terminal=False))

    assert result.violations == [], "\n".join(result.violations[:30])
    f = result.figures
    assert f["lost"] == 0
    assert f["notifications"] == 200
    assert f["accepted"] == 400  # every request delivered twice
    assert f["processed"] == 200
    assert f["duplicates absorbed"] == 200
    assert f["kills (kill -9 mid-batch)"] >= 2
    assert f["forged requests (401)"] >= 8
    assert f["malformed requests (400/413)"] >= 8
    assert f["DLQ notifications (outage)"] == f["resources in an outage until the fix"] >= 1
    assert f["replayed"] == f["DLQ"] >= 2
    assert f["failed (403, failure feedback)"] == f["resources refused (403)"] >= 1
    assert f["resources deleted (404)"] >= 1
    assert f["handler effects committed"] == 200 - f["resources refused (403)"]
    assert 0.15 <= f["Visma fault rate before the fix (outage aside)"] <= 0.25
    assert result.ok
    written = json.loads(results.read_text())
    assert written["passed"] is True
    assert written["figures"]["lost"] == 0
    assert RECORDED_RESULTS.read_bytes() == committed
