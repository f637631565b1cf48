"""``visma-webhooks demo``: the whole pipeline end to end on the embedded defaults.

It starts ``visma-webhooks local`` (moto server, Visma sandbox) as a subprocess on a free
port, sends every sample delivery in ``events/`` signed, then the re-deliveries (samples
whose notifications were already sent) once the first ones are settled, waits until
every notification is settled, prints what happened to each and stops the stack.

The processor runs the log handler and :mod:`.stack.sample_handlers` (a stand-in web
shop that fetches the resource). The expected outcome of each notification follows from
the samples themselves: a notification sent before is a ``duplicate`` (no second handler
run, no second feedback); one whose ``ApiClientId`` is the local stack's own client is an
``echo`` (no handler run, no feedback, nothing fetched); every other one ``succeeded``
with success feedback. A deletion (``SALESORDER_DELETED``) succeeds without being
fetched, and so does a change whose resource turns out to be gone (an id starting with
``missing``: the sandbox answers 404); every other change is fetched from its own
service (a V3 sales order from the sandbox's SalesOrders port).

Last, a change whose webhook was dropped: a customer changes in the sandbox without a
webhook, ``visma-webhooks reconcile`` finds it, and its synthetic notification succeeds
through the same processor, fetched, with no feedback (Visma issued no notification id).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore, OutcomeRecord
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.ordering import normalise
from visma_webhooks.domain.parsing import PayloadError, parse_delivery
from visma_webhooks.domain.reconciling import synthetic_id
from visma_webhooks.domain.resources import ResourceRules
from visma_webhooks.domain.services import FINANCIALS, SERVICES
from visma_webhooks_local.sending import Delivery, load_delivery, post
from visma_webhooks_local.stack.functions import PROJECT_ROOT
from visma_webhooks_local.stack.options import DEFAULT_WEBHOOK_SECRET, SANDBOX_CLIENT_ID
from visma_webhooks_local.stack.state import StackState

EVENTS_DIR = PROJECT_ROOT / "events"
HANDLER_MODULES = "visma_webhooks.notification_handlers.log,visma_webhooks_local.stack.sample_handlers"
START_TIMEOUT = 45.0
SETTLE_TIMEOUT = 40.0
DEMO_TENANT = "1262489"
DROPPED_PATH = "/v1/customer/10004"  # no sample names it: only reconciliation fetches it


@dataclass
class Row:
    """One notification of one delivery, and what is expected of it."""

    sample: str
    notification_id: str
    event: str
    expected: str
    copy: int  # 1 for the first delivery of this notification, 2 for the next...
    service: str | None = None
    path: str | None = None
    fetch: bool | None = None  # True: fetched from its service; False: never fetched; None: either
    feedback_due: bool = True  # False: a synthetic notification (Visma issued no id)
    actual: str = "—"
    feedback: str = "—"
    fetched: str = "—"
    ok: bool = False


@dataclass
class Plan:
    """Two rounds: first deliveries, then re-deliveries (sent once the first round is settled)."""

    first: list[Delivery] = field(default_factory=list)
    again: list[Delivery] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def rounds(self) -> list[tuple[list[Delivery], list[Row]]]:
        return [(self.first, [r for r in self.rows if r.copy == 1]), (self.again, self.rows)]


def samples(directory: Path = EVENTS_DIR) -> list[Path]:
    """The delivery samples: JSON bodies and ``{"headers","body"}`` envelopes, not Lambda events or fixtures."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and ("routeKey" in data or "Records" in data):
            continue  # a Lambda event, for `sam local invoke`
        if isinstance(data, dict) and data and all(str(k).startswith("/") or k in SERVICES for k in data):
            continue  # the sandbox's resource fixtures
        found.append(path)
    return found


def plan(paths: list[Path]) -> Plan:
    """The deliveries in two rounds (first deliveries, then re-deliveries) and the expected rows."""
    result = Plan()
    copies: dict[str, int] = {}
    rules = ResourceRules()
    for path in paths:
        delivery = load_delivery(path)
        try:
            parsed = parse_delivery(delivery.body, delivery.headers, rules)
        except PayloadError:
            continue
        again = bool(parsed.notifications) and all(n.notification_id in copies for n in parsed.notifications)
        (result.again if again else result.first).append(delivery)
        for n in parsed.notifications:
            copies[n.notification_id] = copies.get(n.notification_id, 0) + 1
            result.rows.append(_row(path.name, n, copies[n.notification_id]))
    return result


def _row(sample: str, n: Notification, copy: int) -> Row:
    if copy > 1:
        expected, fetch = "duplicate", None
    elif n.api_client_id == SANDBOX_CLIENT_ID:
        expected, fetch = "echo", False
    else:
        expected, fetch = "succeeded", bool(n.resource_path) and not n.deleted
    return Row(sample, n.notification_id, n.event, expected, copy, n.service, n.resource_path, fetch)


def run(console: Console, *, secret: str = DEFAULT_WEBHOOK_SECRET, keep_logs: bool = False) -> int:
    """Run the demo; returns the exit code (0 only if every notification reached its expected outcome)."""
    started = time.monotonic()
    the_plan = plan(samples())
    reconciled: list[Row] = []  # the change whose webhook was dropped
    workdir = Path(tempfile.mkdtemp(prefix="visma-webhooks-demo-"))
    state_file, output = workdir / "local.json", workdir / "local.out"
    command = [
        sys.executable,
        "-m",
        "visma_webhooks_local.cli",
        "local",
        "--port",
        "0",
        "--webhook-secret",
        secret,
        "--state-file",
        str(state_file),
        "--function-logs",
        str(workdir / "functions.log"),
        "--handler-modules",
        HANDLER_MODULES,
    ]
    console.print("[bold]Starting the local stack[/] (moto server + Visma sandbox)…")
    with open(output, "wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        state = _wait_for_stack(child, state_file)
        console.print(f"  webhook  [cyan]{state.webhook_url}[/]  (secret {secret!r})")
        console.print(f"  Visma    [cyan]{state.sandbox_url}[/]  (embedded sandbox)")
        console.print(f"  AWS      [cyan]{state.aws_endpoint_url}[/]  (moto server)")
        store = DynamoDBOutcomeStore(state.table_name, state.client("dynamodb"), 0)
        settled = True
        for deliveries, rows in the_plan.rounds():
            for delivery in deliveries:
                response = post(state.webhook_url, delivery, secret)
                console.print(
                    f"  sent {delivery.name:<32} → HTTP {response.status_code} {response.text}",
                    soft_wrap=True,
                )
            settled = _wait_until_settled(store, rows) and settled
        reconciled = [_dropped_webhook(console, state, state_file)]
        settled = _wait_until_settled(store, reconciled) and settled
        feedback, fetched = _sandbox_view(state.sandbox_url)
        _evaluate([*the_plan.rows, *reconciled], store, feedback, fetched)
    except _DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        console.print(output.read_text(errors="replace")[-4000:])
        return 1
    finally:
        code = _stop(child)
    table = Table(title="What happened to each notification", title_justify="left")
    columns = ("notification", "event", "sample", "expected", "actual", "feedback in Visma", "fetched from")
    for column in columns:
        table.add_column(column, no_wrap=column in ("notification", "event", "fetched from"))
    for row in [*the_plan.rows, *reconciled]:
        colour = "green" if row.ok else "red"
        table.add_row(
            _short(row.notification_id),
            row.event,
            row.sample,
            row.expected,
            f"[{colour}]{row.actual}[/]",
            row.feedback,
            row.fetched,
        )
    console.print(table)
    good = sum(r.ok for r in the_plan.rows)
    found = all(r.ok for r in reconciled)
    elapsed = time.monotonic() - started
    if code != 0:
        console.print(f"[red]the local stack did not stop cleanly (exit {code})[/]")
    if good == len(the_plan.rows) and found and settled and code == 0:
        console.print(
            f"[green]✓ all {good} notifications reached their expected outcome[/], and the change whose "
            f"webhook was dropped was found by reconciliation and processed, in {elapsed:.1f} s"
        )
        if not keep_logs:
            _cleanup(workdir)
        return 0
    console.print(
        f"[red]✗ {len(the_plan.rows) - good} of {len(the_plan.rows)} notifications did not reach their "
        f"expected outcome[/]{'' if found else ', nor the change whose webhook was dropped'} "
        f"({elapsed:.1f} s); logs in {workdir}"
    )
    return 1


class _DemoError(RuntimeError):
    pass


def _wait_for_stack(child: subprocess.Popen, state_file: Path) -> StackState:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise _DemoError(f"visma-webhooks local exited with {child.returncode}")
        with contextlib.suppress(Exception):
            state = StackState.load(state_file)
            if state.pid == child.pid:
                return state
        time.sleep(0.1)
    raise _DemoError("the local stack did not start in time")


def _final_steps(record: OutcomeRecord | None) -> list[str]:
    return record.final_steps if record is not None else []


def _wait_until_settled(store: DynamoDBOutcomeStore, rows: list[Row]) -> bool:
    """Wait until every notification has as many final steps as deliveries sent so far (bounded)."""
    wanted: dict[str, int] = {}
    for row in rows:
        wanted[row.notification_id] = max(wanted.get(row.notification_id, 0), row.copy)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        pending = [nid for nid, n in wanted.items() if len(_final_steps(store.get(nid))) < n]
        if not pending:
            return True
        time.sleep(0.2)
    return False


def _sandbox_view(sandbox_url: str | None) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """The feedback the sandbox received, and the (service, path) pairs it was asked to GET."""
    if not sandbox_url:
        return [], set()
    views = []
    for name in ("feedback", "requests"):
        response = requests.get(f"{sandbox_url}/_sandbox/{name}", timeout=10)
        response.raise_for_status()
        views.append(response.json())
    feedback, calls = views
    return feedback, {(c["service"], c["path"]) for c in calls if c["method"] == "GET"}


def _evaluate(
    rows: list[Row],
    store: DynamoDBOutcomeStore,
    feedback: list[dict[str, Any]],
    fetched: set[tuple[str, str]],
) -> None:
    for row in rows:
        was_fetched = (row.service, row.path) in fetched
        row.fetched = row.service or "—" if was_fetched else "—"
        fetch_ok = row.fetch is None or row.fetch == was_fetched
        steps = _final_steps(store.get(row.notification_id))
        posted = [f for f in feedback if f.get("notificationId") == row.notification_id]
        row.actual = steps[row.copy - 1] if len(steps) >= row.copy else "not settled"
        if posted:
            row.feedback = ", ".join("✓ success" if f.get("isSuccess") else "✗ failure" for f in posted)
        else:
            row.feedback = "none"
        if row.expected == "succeeded":
            feedback_ok = [f.get("isSuccess") for f in posted] == ([True] if row.feedback_due else [])
            row.feedback = row.feedback if row.feedback_due or posted else "none (no Visma id)"
        elif row.expected == "duplicate":
            feedback_ok = len(posted) == 1  # the first delivery's feedback only
            row.feedback = "none again (dedup)" if feedback_ok else row.feedback
        else:
            feedback_ok = not posted
        row.ok = row.actual == row.expected and feedback_ok and fetch_ok


def _stop(child: subprocess.Popen) -> int:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return -9
    return child.returncode


def _cleanup(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


def _dropped_webhook(console: Console, state: StackState, state_file: Path) -> Row:
    """A customer changes in the ERP and its webhook is lost; one reconciliation run finds it."""
    path, modified = (
        DROPPED_PATH,
        (datetime.now(UTC) - timedelta(seconds=10)).isoformat(timespec="milliseconds"),
    )
    document = {
        "number": path.rsplit("/", 1)[-1],
        "name": "Created without a webhook",
        "lastModifiedDateTime": modified,
    }
    requests.post(
        f"{state.sandbox_url}/_sandbox/resources", json={path: document}, timeout=10
    ).raise_for_status()
    console.print(
        f"  changed  {path} in Visma, its webhook dropped; running [bold]visma-webhooks reconcile[/]"
    )
    command = [
        sys.executable,
        "-m",
        "visma_webhooks_local.cli",
        "reconcile",
        "--json",
        "--state-file",
        str(state_file),
    ]
    command += ["--tenant", DEMO_TENANT, "--entity", "customer"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    runs = json.loads(done.stdout).get("runs", []) if done.returncode == 0 else []
    console.print(
        f"  reconcile found {sum(r['missed'] for r in runs)} missed webhook(s), enqueued {sum(r['enqueued'] for r in runs)}"
    )
    nid = synthetic_id(DEMO_TENANT, FINANCIALS, path, normalise(modified) or "")
    return Row(
        "(dropped webhook)",
        nid,
        "customer_changed",
        "succeeded",
        1,
        FINANCIALS,
        path,
        True,
        feedback_due=False,
    )


def _short(notification_id: str, width: int = 36) -> str:
    """An id cut to the width of Visma's (a synthetic id is longer), so the table fits 80 columns."""
    return notification_id if len(notification_id) <= width else notification_id[: width - 1] + "…"
