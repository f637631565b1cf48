"""The soak (``make soak``) at 200 notifications: the same run and the same invariants, in ``make test``.

``visma-webhooks local --no-processor`` and ``visma-webhooks process`` run as
subprocesses against a faulty Visma in this process; the processor is killed with
SIGKILL mid-batch three times. Then the mass update: 40 notifications of one tenant at
once against 30 calls per 15 s window (at least 3 windows), with 2 other tenants'
traffic mixed in, on 2 processes of 4 pollers. See :mod:`benchmarks.soak` and
:mod:`benchmarks.soak.mass_update` for what is checked and why.
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from benchmarks.soak.cli import run
from benchmarks.soak.plan import RECORDED_RESULTS, SoakConfig, check_mass_plan

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-soak")]


@pytest.mark.timeout(720)  # a hang guard: the run takes 3 to 5 minutes on two busy cores
def test_200_notifications_under_faults_duplicates_forgeries_and_kills_then_a_mass_update(tmp_path):
    committed = RECORDED_RESULTS.read_bytes()
    results = tmp_path / "soak-results.json"
    config = SoakConfig(
        notifications=200,
        kills=3,
        mass_update=40,
        calls_per_window=30,  # 27 allowed after the 10 % reserve: 80 calls need 3 windows
        window_seconds=15.0,
        other_tenants=2,
        other_rate=0.4,
        workdir=tmp_path / "work",
        keep=True,
        results=results,
        timeout=400,  # a guard against a hang: the first phases take 100 to 260 s on two busy cores
    )
    assert check_mass_plan(config) == []
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
    m = result.mass_update
    assert m["notifications"] == 40
    assert m["calls needed"] == 80
    assert m["windows needed at the floor"] == 3
    assert m["windows used (Visma's resets + 1)"] >= 3
    assert m["waits re-enqueued (throttled)"] >= 1  # the budget made it wait, and waiting cost no receive
    assert m["DLQ"] == 0
    assert m["gave up"] == 0
    assert m["feedback posts"] == 40 + m["other tenants' notifications"]
    assert m["of them during the burst"] >= 2
    assert m["other tenants' worst latency during the burst (s)"] is not None
    assert result.ok
    written = json.loads(results.read_text())
    assert written["passed"] is True
    assert written["figures"]["lost"] == 0
    assert written["mass_update"]["DLQ"] == 0
    assert RECORDED_RESULTS.read_bytes() == committed
