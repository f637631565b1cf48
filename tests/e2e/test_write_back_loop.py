"""A handler that writes back to Visma through ``visma-webhooks local``: the loop stops after one round.

The sandbox fires a signed webhook for every write, as Visma does. With ``ApiClientId``
(ERP 9.30+) the write's notification names our own client and is an ``echo``; without
it, the fetched resource is the same as the handler last saw it, and it is ``unchanged``.
Each test prints the API calls the sandbox saw for the one real change (before echoes
and fingerprints: 6 handler runs and 18 API calls).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.e2e.conftest import CLIENT_ID, CLIENT_SECRET, SECRET, TENANT, LocalStackProcess
from visma_webhooks_local.sandbox import VismaSandbox

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-write-back")]


@pytest.fixture(scope="module")
def sandbox():
    with VismaSandbox(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox):
    running = LocalStackProcess(
        tmp_path_factory.mktemp("write-back"), sandbox, "--handler-modules", "e2e_writeback"
    ).start()
    sandbox.configure_webhooks(url=running.url, secrets=[SECRET], delay=0.2)
    yield running
    code = running.stop()
    assert code == 0, f"visma-webhooks local exited {code} on SIGTERM:\n{running.log()}"


def calls_since(sandbox: VismaSandbox, before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The API calls per service and kind since ``before`` (a :meth:`VismaSandbox.calls` snapshot)."""
    now = sandbox.calls()
    diff = {
        service: {k: n - before.get(service, {}).get(k, 0) for k, n in kinds.items()}
        for service, kinds in now.items()
    }
    return {s: {k: n for k, n in kinds.items() if n} for s, kinds in diff.items() if kinds.get("total")}


def one_real_change(stack: LocalStackProcess, sandbox: VismaSandbox, path: str, changes: dict) -> tuple:
    """An ERP user changes ``path``; returns (the real notification, the write-back's) once both settled."""
    seen = len(sandbox.webhooks)
    real = sandbox.fire(path, tenant=TENANT, changes=changes, api_client_id="erp-web-ui")
    stack.settled([real["notificationId"]])
    fired = sandbox.wait_for_webhooks(seen + 2)
    write_back = fired[seen + 1]
    assert write_back["state"] == "delivered", write_back
    stack.settled([write_back["notificationId"]])
    return real, write_back


def report(capsys, title: str, runs: Counter, calls: dict) -> None:
    with capsys.disabled():
        print(
            f"\n{title}: {sum(runs.values())} handler run(s); API calls {json.dumps(calls, sort_keys=True)}"
        )


def test_a_write_back_echo_names_our_client_and_the_loop_stops(stack, sandbox, capsys):
    before, writes, fired = sandbox.calls(), len(sandbox.writes), len(sandbox.webhooks)
    real, echo = one_real_change(stack, sandbox, "/v1/customer/10002", {"creditLimit": 130000.0})
    assert echo["apiClientId"] == CLIENT_ID  # Visma names the writer: our own client
    assert stack.record(real["notificationId"]).final_steps == ["succeeded"]
    assert stack.record(echo["notificationId"]).final_steps == ["echo"]
    runs = stack.runs()
    assert runs == Counter({real["notificationId"]: 1})
    assert [w["method"] for w in sandbox.writes[writes:]] == ["PUT"]
    assert len(sandbox.webhooks) == fired + 2  # the echo wrote nothing, so nothing else fired
    assert [f["isSuccess"] for f in stack.feedback(real["notificationId"])] == [True]
    assert stack.feedback(echo["notificationId"]) == []
    calls = calls_since(sandbox, before)
    report(capsys, "echo", runs, calls)
    assert calls.pop("connect", {}).get("token", 0) <= 1
    assert calls == {"financials": {"GET": 1, "PUT": 1, "feedback": 1, "total": 3}}


def test_without_api_client_id_the_unchanged_resource_stops_the_loop(stack, sandbox, capsys):
    sandbox.configure_webhooks(api_client_id=False)
    try:
        before, runs_before, fired = sandbox.calls(), stack.runs(), len(sandbox.webhooks)
        real, write_back = one_real_change(stack, sandbox, "/v1/customer/10001", {"creditLimit": 51000.0})
        assert write_back["apiClientId"] is None
        assert stack.record(real["notificationId"]).final_steps == ["succeeded"]
        assert stack.record(write_back["notificationId"]).final_steps == ["unchanged"]
        runs = stack.runs() - runs_before
        assert runs == Counter({real["notificationId"]: 1})
        assert len(sandbox.webhooks) == fired + 2
        assert [f["isSuccess"] for f in stack.feedback(write_back["notificationId"])] == [True]
        calls = calls_since(sandbox, before)
        report(capsys, "unchanged", runs, calls)
        assert calls.pop("connect", {}).get("token", 0) <= 1
        assert calls == {"financials": {"GET": 2, "PUT": 1, "feedback": 2, "total": 5}}
    finally:
        sandbox.configure_webhooks(api_client_id=True)
