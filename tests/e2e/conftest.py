"""End-to-end harness: ``visma-webhooks local`` as a real subprocess, a Visma server run by the test.

The test process runs the Visma sandbox (with required client credentials) and starts
the local stack against it with ``--visma-base-url/--visma-salesorders-url/--visma-journaltx-url/
--token-url/--client-id/--client-secret``,
exactly as a deployed stack would talk to Visma. Everything else is HTTP to the webhook
endpoint, the CLI as a subprocess, and reads of the stack's queues and outcome records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import requests

from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore, OutcomeRecord
from visma_webhooks.domain.signature import sign
from visma_webhooks_local.ops import queue_counts
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.stack.state import StackState

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SECRET = "e2e-webhook-secret"
CLIENT_ID, CLIENT_SECRET = "e2e-client", "e2e-client-secret"
TENANT = "1262489"
COLUMNS = "80"  # the width the CLI's output and help must read well at


def cli() -> list[str]:
    """The installed console script, or the module when run outside the venv."""
    script = Path(sys.executable).with_name("visma-webhooks")
    return [str(script)] if script.exists() else [sys.executable, "-m", "visma_webhooks_local.cli"]


@pytest.fixture(autouse=True)
def cli_width(monkeypatch):
    """Every CLI a test runs reads its terminal width from here."""
    monkeypatch.setenv("COLUMNS", COLUMNS)


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def new_id() -> str:
    return str(uuid.uuid4())


def legacy_item(
    nid: str,
    path: str = "customer/10001",
    *,
    event: str | None = None,
    tenant: str = TENANT,
    uri: str | None = None,
) -> dict[str, Any]:
    """A legacy (Visma.net Integrations) item naming ``/v1/<path>`` on the legacy host."""
    entity = path.split("/")[0]
    return {
        "notificationId": nid,
        "contextId": tenant,
        "event": event or f"{entity}_changed",
        "resourceUri": uri or f"https://integration.visma.net/API/controller/api/v1/{path}",
        "timeStamp": 638680512000000000,
    }


class LocalStackProcess:
    """One ``visma-webhooks local`` subprocess and its view of the world."""

    def __init__(self, workdir: Path, sandbox: VismaSandbox, *options: str, processor: bool = True):
        self.workdir = workdir
        self.sandbox = sandbox
        self.state_file = workdir / "local.json"
        self.runs_file = workdir / "runs.txt"
        self.output = workdir / "local.out"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "E2E_RUNS_FILE": str(self.runs_file),
            "COLUMNS": COLUMNS,
        }
        self.command = [
            *cli(),
            "local",
            "--port",
            "0",
            "--state-file",
            str(self.state_file),
            "--function-logs",
            str(workdir / "functions.log"),
            "--visma-base-url",
            sandbox.url,
            "--visma-salesorders-url",
            sandbox.salesorders_url,
            "--visma-journaltx-url",
            sandbox.journaltx_url,
            "--token-url",
            sandbox.token_url,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--webhook-secret",
            SECRET,
            "--handler-modules",
            "visma_webhooks.notification_handlers.log,e2e_counter",
            "--retry-base-seconds",
            "0.3",
            "--visibility-timeout",
            "10",
            "--processor-timeout",
            "10",
            *([] if processor else ["--no-processor"]),
            *options,
        ]
        self.process: subprocess.Popen | None = None
        self._state: StackState | None = None

    def start(self) -> LocalStackProcess:
        with open(self.output, "wb") as out:
            process = self.process = subprocess.Popen(  # noqa: S603
                self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir
            )

        def ready() -> StackState | None:
            if process.poll() is not None:
                pytest.fail(f"visma-webhooks local exited with {process.returncode}:\n{self.log()}")
            try:
                state = StackState.load(self.state_file)
            except Exception:
                return None
            return state if state.pid == process.pid else None

        self._state = wait_for(ready, 60, "the local stack to start")
        self.store = DynamoDBOutcomeStore(self.state.table_name, self.state.client("dynamodb"), 0)
        self.sqs = self.state.client("sqs")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the stack as a user would; returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    @property
    def state(self) -> StackState:
        """The running stack's state file (only after :meth:`start`)."""
        if self._state is None:
            raise RuntimeError("the local stack has not been started")
        return self._state

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    # -- talking to it --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.state.webhook_url

    def post(self, body: Any, *, secret: str | None = SECRET, headers: dict[str, str] | None = None):
        """POST a delivery (bytes as they are, anything else as compact JSON), signed with ``secret``."""
        raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        sent = {"content-type": "application/json", **(headers or {})}
        if secret is not None:
            sent["x-vwd-signature-v1"] = sign(raw, secret)
        return requests.post(self.url, data=raw, headers=sent, timeout=30)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a ``visma-webhooks`` command against this stack."""
        result = subprocess.run(  # noqa: S603
            [*cli(), *args, "--state-file", str(self.state_file)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=self.workdir,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"visma-webhooks {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    # -- what happened --------------------------------------------------------------------

    def record(self, nid: str) -> OutcomeRecord | None:
        return self.store.get(nid)

    def steps(self, nid: str) -> list[str]:
        record = self.record(nid)
        return [h.step for h in record.history] if record else []

    def settled(self, nids: Iterable[str], copies: int = 1, timeout: float = 30) -> dict[str, OutcomeRecord]:
        """Wait until each notification has ``copies`` final steps in its history; return the records."""
        nids = list(nids)

        def done() -> dict[str, OutcomeRecord] | None:
            records = {nid: self.record(nid) for nid in nids}
            if all(r and len(r.final_steps) >= copies for r in records.values()):
                return {nid: r for nid, r in records.items() if r}
            return None

        return wait_for(done, timeout, f"{nids} to settle")

    def runs(self) -> Counter[str]:
        if not self.runs_file.exists():
            return Counter()
        return Counter(line for line in self.runs_file.read_text().splitlines() if line)

    def feedback(self, nid: str) -> list[dict[str, Any]]:
        return [f for f in self.sandbox.feedback if f["notificationId"] == nid]

    def depth(self, which: str = "dlq") -> int:
        visible, in_flight, _ = queue_counts(
            self.sqs, self.state.dlq_url if which == "dlq" else self.state.queue_url
        )
        return visible + in_flight


@pytest.fixture(scope="module")
def sandbox():
    """The Visma the stack talks to: Visma Connect and the ERP API, with required client credentials."""
    with VismaSandbox(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox):
    """``visma-webhooks local`` (maxReceiveCount 5 from the template) for the module's tests."""
    running = LocalStackProcess(tmp_path_factory.mktemp("stack"), sandbox).start()
    yield running
    code = running.stop()
    assert code == 0, f"visma-webhooks local exited {code} on SIGTERM:\n{running.log()}"
