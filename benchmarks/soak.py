"""``make soak``: the reliability run of the whole pipeline, with a summary and a non-zero exit on any loss.

What it does (``python -m benchmarks.soak [--notifications 2000] [--kills 6] [--seed N]``):

* Runs a Visma server in this process on loopback (the embedded sandbox with extra
  faults, :class:`FaultyVisma`): 20 % of calls, the token endpoint included, answer a
  5xx, a 429 (``Retry-After: 1``) or time out (the server holds the request until the
  client has given up, and then does not act on it); 1 % of the resources are
  permanently 404 (``missing-*`` ids), and 0.5 % are in an outage (always 503) until
  "Visma is fixed".
* Starts ``visma-webhooks local --no-processor`` as a subprocess against it, and runs the
  processor loop in separate ``visma-webhooks process`` subprocesses, with the counting
  handler :mod:`benchmarks.soak_handlers`.
* Sends the notifications signed, in grouped legacy arrays (1 to 20 items) and single
  dispatcher deliveries; every request is delivered twice (about a third of the pairs at
  the same instant, the rest with the copy later in the stream), interleaved with forged
  requests (bad, missing or misplaced signatures: 401) and malformed ones (400/413).
* Kills a processor process with SIGKILL at random points mid-batch (half of them within
  milliseconds of its handler counting an effect, the others up to 150 ms later) and
  starts a new one.
* Once the queue is drained and nothing is in flight: checks the invariants (below),
  "fixes Visma" (no more faults or outage), runs ``visma-webhooks replay`` and checks that
  the DLQ drains to success.

Invariants (each one is a line of the summary; any violation exits 1):

* every request got the answer it should (202 with every item accepted, 401, 400/413);
* every valid notification got exactly one feedback with the right ``isSuccess``
  (404 → false). Two kinds of extra feedback are told apart rather than forbidden:
  a post made by a process that was then killed before it could record it is repeated by
  the next attempt (Visma's feedback endpoint has no idempotency key, so no client can
  avoid that; every such repeat must come from a killed process), and a notification one
  of whose copies failed on its last receive and went to the DLQ had a "gave up" notice
  (``isSuccess: false``) posted then, which the success after the replay supersedes. The
  last feedback of each notification must be the right one;
* every handler effect happened exactly once: each notification whose resource exists
  was counted at least once, and every count but the last came from a process killed
  before the run could be recorded (the crash window that no handler outside a
  transaction with the dedup table can close); 404 and outage notifications ran no
  handler before the fix;
* the DLQ holds only what was designed to fail: copies of valid notifications that used
  up their receives on transient failures (every outage notification, both copies, and
  the few that the 20 % fault rate and the kills pushed past ``--max-receive-count``);
  nothing forged, malformed or 404;
* ``visma-webhooks replay`` after the fix drains the DLQ, and every replayed notification
  ends with a success feedback (or its 404 failure);
* no forged or malformed notification was processed, fetched, queued or answered;
* lost (a valid notification without its final outcome and feedback) is 0.

The figures go to the screen and to ``benchmarks/soak-results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from visma_webhooks.adapters.dynamodb import DynamoDBOutcomeStore
from visma_webhooks.domain.processing import COMPLETED
from visma_webhooks.domain.queueing import message_attribute
from visma_webhooks.domain.signature import sign
from visma_webhooks_local.ops import effective_outcome
from visma_webhooks_local.sandbox import TOKEN_PATH, VismaSandbox, _Response
from visma_webhooks_local.stack import StackState

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "soak-results.json"
SECRET = "soak-webhook-secret"
CLIENT_ID, CLIENT_SECRET = "soak-client", "soak-client-secret"
LEGACY_HOST = "https://integration.visma.net/API/controller/api"
DISPATCHER_HOST = "https://api.finance.visma.net"
OUTAGE_RULE = "/v1/*/outage-*"
TRANSIENT_STEPS = ("retrying", "throttled")
# Shared with benchmarks.soak_handlers, which is not imported here: importing it registers
# its handler and tags the Visma client's User-Agent in this process too.
EFFECTS_ENV = "SOAK_EFFECTS_DIR"
PID_TAG = "soak-pid/"
# entity path, legacy event, dispatcher display name, id format
ENTITIES = (
    ("customer", "customer_changed", "Customer Changed", "{}"),
    ("supplier", "supplier_changed", "Supplier Changed", "{}"),
    ("inventory", "inventoryitem_changed", "Inventory Item Changed", "ITEM-{}"),
    ("salesorder", "salesorder_changed", "Sales Order Changed", "SO/{}"),
    ("customerinvoice", "customerinvoice_changed", "AR Invoice Changed", "{}"),
)


# -- configuration ------------------------------------------------------------------------


@dataclass
class SoakConfig:
    notifications: int = 2000
    kills: int = 6
    seed: int = 20261124
    fault_rate: float = 0.20  # of all Visma calls: 5xx, 429 and timeouts in these shares
    fault_shares: tuple[float, float, float] = (0.5, 0.3, 0.2)
    missing_rate: float = 0.01  # resources that are permanently 404
    outage_rate: float = 0.005  # resources answering 503 until Visma is fixed
    dispatcher_share: float = 0.1  # notifications sent as single dispatcher deliveries
    concurrent_share: float = 0.35  # delivery pairs sent at the same instant
    max_group: int = 20
    tenants: int = 8
    forged: int | None = None  # default: 2 % of the valid requests, at least 8
    malformed: int | None = None  # default: the same
    max_receive_count: int = 6
    processor_timeout: int = 6
    visibility_timeout: int = 8
    retry_base_seconds: float = 0.25
    processes: int = 2
    pollers: int = 4
    senders: int = 4
    # Sending waits while the queue holds this many messages: moto's SQS scans every message
    # of the queue on each receive and delete, so a backlog of thousands only measures moto.
    max_backlog: int = 250
    timeout: float = 1800.0  # the whole run: a guard against a hang (it takes 4 to 14 minutes)
    workdir: Path | None = None
    keep: bool = False  # keep the work directory (logs, effects)
    results: Path | None = RESULTS


# -- Visma ----------------------------------------------------------------------------------


class FaultyVisma(VismaSandbox):
    """The embedded sandbox with the soak's faults, and the processor process behind each feedback.

    A drawn fault applies to the token endpoint and to every API call. A timeout holds
    the request for ``hang_seconds`` (longer than any read timeout the processor can use
    within its own timeout) and then answers 504 without acting on it, as a gateway that
    gave up before the backend saw the request.
    """

    def __init__(self, config: SoakConfig, hang_seconds: float):
        super().__init__(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=config.seed)
        error, throttle, timeout = (config.fault_rate * s for s in config.fault_shares)
        self.thresholds = (error, error + throttle, error + throttle + timeout)
        self.hang_seconds = hang_seconds
        self.faulty = True
        self._fault_rng = random.Random(config.seed * 7 + 1)
        self._who = threading.local()
        self.add_rule(OUTAGE_RULE, status=503)

    def fix(self) -> None:
        """No more injected faults, and the outage is over."""
        self.faulty = False
        self.clear_rules()

    def _serve(self, method: str, path: str, headers: Any, raw: bytes) -> _Response:
        self._who.pid = pid_from_user_agent(headers.get("User-Agent"))
        if self.faulty and (path == TOKEN_PATH or path.startswith("/v1/")):
            with self._lock:
                draw = self._fault_rng.random()
                status = self._fault_rng.choice((500, 502, 503, 504))
            error, throttle, timeout = self.thresholds
            if draw < error:
                return _Response(status, {"message": f"injected HTTP {status}"}, fault="5xx")
            if draw < throttle:
                return _Response(429, {"message": "injected throttling"}, {"Retry-After": "1"}, fault="429")
            if draw < timeout:
                self._hang(self.hang_seconds)
                return _Response(504, {"message": "injected timeout"}, fault="timeout")
        return super()._serve(method, path, headers, raw)

    def _record_feedback(self, method: str, tenant: str, body: Any) -> _Response:
        with self._lock:  # re-entrant: the parent appends under it, so [-1] is this post
            response = super()._record_feedback(method, tenant, body)
            if response.status == 201:
                self._feedback[-1]["pid"] = getattr(self._who, "pid", None)
        return response


def pid_from_user_agent(value: str | None) -> int | None:
    """The processor process that sent a request (``soak-pid/<pid>`` in its User-Agent)."""
    tail = (value or "").partition(PID_TAG)[2].split(" ", 1)[0]
    return int(tail) if tail.isdigit() else None


def read_effects(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every effect line the counting handler wrote under ``directory``, from any process."""
    effects: list[dict[str, Any]] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("effects-") and name.endswith(".jsonl"):
            with open(os.path.join(directory, name), encoding="utf-8") as file:
                effects.extend(json.loads(line) for line in file if line.endswith("\n"))
    return effects


# -- the workload ---------------------------------------------------------------------------


@dataclass
class Planned:
    nid: str
    tenant: str
    path: str  # /v1/...
    kind: str  # ok | missing | outage
    fmt: str  # legacy | dispatcher
    entity: int


@dataclass
class Request:
    label: str  # valid | forged:<how> | malformed:<how>
    raw: bytes
    headers: dict[str, str]
    expect: tuple[int, ...]
    nids: list[str] = field(default_factory=list)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def plan(config: SoakConfig, rng: random.Random) -> list[Planned]:
    n = config.notifications
    kinds = ["ok"] * n
    special = rng.sample(
        range(n), max(1, round(n * config.missing_rate)) + max(1, round(n * config.outage_rate))
    )
    missing_count = max(1, round(n * config.missing_rate))
    for i in special[:missing_count]:
        kinds[i] = "missing"
    for i in special[missing_count:]:
        kinds[i] = "outage"
    legacy_tenants = [str(1262489 + i) for i in range(config.tenants)]
    dispatcher_tenants = [_uuid(rng) for _ in range(max(1, config.tenants // 2))]
    planned = []
    for i in range(n):
        fmt = "dispatcher" if rng.random() < config.dispatcher_share else "legacy"
        entity = rng.randrange(len(ENTITIES))
        name, _, _, id_format = ENTITIES[entity]
        if kinds[i] == "missing":
            rid = f"missing-{i}"
        elif kinds[i] == "outage":
            rid = f"outage-{i}"
        else:  # a pool smaller than the run, so that one resource is named by several notifications
            rid = id_format.format(rng.randint(10000, 10000 + max(10, n // 3)))
        tenant = rng.choice(dispatcher_tenants if fmt == "dispatcher" else legacy_tenants)
        planned.append(Planned(_uuid(rng), tenant, f"/v1/{name}/{rid}", kinds[i], fmt, entity))
    return planned


def _legacy_item(p: Planned, ticks: int) -> dict[str, Any]:
    _, event, _, _ = ENTITIES[p.entity]
    return {
        "notificationId": p.nid,
        "contextId": p.tenant,
        "event": event,
        "resourceUri": LEGACY_HOST + p.path,
        "timeStamp": ticks,
    }


def _signed(raw: bytes, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"content-type": "application/json", "x-vwd-signature-v1": sign(raw, SECRET), **(extra or {})}


def _compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def valid_requests(planned: list[Planned], config: SoakConfig, rng: random.Random) -> list[Request]:
    ticks = 638_680_512_000_000_000
    out: list[Request] = []
    legacy = [p for p in planned if p.fmt == "legacy"]
    i = 0
    while i < len(legacy):
        size = min(rng.choice((1, 1, 2, 3, 5, 8, 10, 12, 15, config.max_group)), len(legacy) - i)
        group = legacy[i : i + size]
        i += size
        raw = _compact([_legacy_item(p, ticks + k) for k, p in enumerate(group)])
        out.append(Request("valid", raw, _signed(raw), (202,), [p.nid for p in group]))
    for p in planned:
        if p.fmt != "dispatcher":
            continue
        _, _, display, _ = ENTITIES[p.entity]
        raw = _compact(
            {
                "Event": display,
                "EntityId": p.path.split("/", 3)[3],
                "ResourceUri": DISPATCHER_HOST + p.path,
            }
        )
        now_ms = str(int(time.time() * 1000))
        headers = {
            "x-vwd-tenant-id": p.tenant,
            "x-vwd-notification-id": p.nid,
            "x-vwd-event-id": _uuid(rng),
            "x-vwd-subscription-id": "soak-subscription",
            "x-vwd-notification-timestamp": now_ms,
            "x-vwd-webhook-timestamp": now_ms,
        }
        out.append(Request("valid", raw, _signed(raw, headers), (202,), [p.nid]))
    rng.shuffle(out)
    return out


def forged_requests(count: int, rng: random.Random) -> list[Request]:
    """Bodies that look genuine (fresh ids) with a signature that must not verify: 401."""
    out = []
    hows = ("unsigned", "another key", "another body", "not base64", "old header", "truncated", "empty")
    for k in range(count):
        how = hows[k % len(hows)]
        nids = [_uuid(rng) for _ in range(rng.randint(1, 3))]
        items = [
            {
                "notificationId": nid,
                "contextId": "1262489",
                "event": "customer_changed",
                "resourceUri": f"{LEGACY_HOST}/v1/customer/forged-{nid[:8]}",
                "timeStamp": 638680512000000000,
            }
            for nid in nids
        ]
        raw = _compact(items)
        headers = {"content-type": "application/json"}
        good = sign(raw, SECRET)
        if how == "another key":
            headers["x-vwd-signature-v1"] = sign(raw, "not-the-secret")
        elif how == "another body":
            headers["x-vwd-signature-v1"] = sign(raw + b" ", SECRET)
        elif how == "not base64":
            headers["x-vwd-signature-v1"] = "%%%not-base64%%%"
        elif how == "old header":
            headers["x-vwd-signature"] = good
        elif how == "truncated":
            headers["x-vwd-signature-v1"] = good[:20]
        elif how == "empty":
            headers["x-vwd-signature-v1"] = ""
        out.append(Request(f"forged:{how}", raw, headers, (401,), nids))
    return out


def malformed_requests(count: int, rng: random.Random) -> list[Request]:
    """Signed, but not a delivery: 400 (413 for the oversize one)."""
    out = []
    for k in range(count):
        nid = _uuid(rng)
        item = _compact(
            [
                {
                    "notificationId": nid,
                    "contextId": "1262489",
                    "event": "customer_changed",
                    "resourceUri": f"{LEGACY_HOST}/v1/customer/malformed-{nid[:8]}",
                    "timeStamp": 638680512000000000,
                }
            ]
        )
        variants: dict[str, tuple[bytes, tuple[int, ...]]] = {
            "truncated JSON": (item[: len(item) // 2], (400,)),
            "not JSON": (b"notificationId=" + nid.encode(), (400,)),
            "empty body": (b"", (400,)),
            "empty array": (b"[]", (400,)),
            "a string": (json.dumps(nid).encode(), (400,)),
            "numbers": (b"[1,2,3]", (400,)),
            "null": (b"null", (400,)),
            "UTF-8 BOM": (b"\xef\xbb\xbf" + item, (400,)),
            "invalid UTF-8": (item.replace(b"customer_changed", b"customer\xff_changed"), (400,)),
            "nested 200 deep": (b"[" * 200 + b"]" * 200, (400,)),
            "oversize": (b"[" + item[1:-1] + b"," + b" " * 600_000 + item[1:-1] + b"]", (413,)),
        }
        how = list(variants)[k % len(variants)]
        raw, expect = variants[how]
        out.append(Request(f"malformed:{how}", raw, _signed(raw), expect, [nid]))
    return out


def schedule(
    valid: list[Request], extra: list[Request], config: SoakConfig, rng: random.Random
) -> list[tuple[float, list[Request]]]:
    """Jobs in sending order: every valid request twice (a pair at once, or the copy later)."""
    jobs: list[tuple[float, list[Request]]] = []
    for i, request in enumerate(valid):
        if rng.random() < config.concurrent_share:
            jobs.append((i, [request, request]))
        else:
            jobs.append((i, [request]))
            jobs.append((i + rng.uniform(1, 60), [request]))
    for request in extra:
        jobs.append((rng.uniform(0, len(valid)), [request]))
    jobs.sort(key=lambda job: job[0])
    return jobs


# -- sending ----------------------------------------------------------------------------------


@dataclass
class Sent:
    request: Request
    status: int | None
    body: Any
    attempts: int


class Sender:
    """Posts the jobs with a few threads; a pair is posted from two threads at the same instant.

    A valid request that is not answered 2xx is sent again (as the dispatcher retries).
    """

    def __init__(
        self,
        url: str,
        jobs: list[tuple[float, list[Request]]],
        threads: int,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = 0,
    ):
        self.url = url
        self.jobs = jobs
        self.threads = threads
        self.backlog = backlog
        self.max_backlog = max_backlog
        self.paused = 0.0  # seconds the senders waited for the queue
        self._depth = (0.0, 0)  # (when read, depth)
        self.results: list[Sent] = []
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._local = threading.local()

    def start(self) -> Sender:
        workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        threading.Thread(target=self._finish, args=(workers,), daemon=True).start()
        return self

    def _finish(self, workers: list[threading.Thread]) -> None:
        for w in workers:
            w.join()
        self.done.set()

    def _wait_for_room(self) -> None:
        """Hold back while the queue holds ``max_backlog`` messages or more (read at most every 0.25 s)."""
        if self.backlog is None or self.max_backlog <= 0:
            return
        started = time.monotonic()
        while True:
            with self._lock:
                read_at, depth = self._depth
                if time.monotonic() - read_at > 0.25:
                    try:
                        depth = self.backlog()
                    except Exception:
                        depth = 0
                    self._depth = (time.monotonic(), depth)
            if depth < self.max_backlog:
                break
            time.sleep(0.25)
        waited = time.monotonic() - started
        with self._lock:
            self.paused += waited

    def _work(self) -> None:
        while True:
            self._wait_for_room()
            with self._lock:
                if self._next >= len(self.jobs):
                    return
                _, job = self.jobs[self._next]
                self._next += 1
            if len(job) == 1:
                self._post(job[0])
            else:
                barrier = threading.Barrier(len(job))
                twins = [threading.Thread(target=self._post, args=(r, barrier)) for r in job]
                for t in twins:
                    t.start()
                for t in twins:
                    t.join()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _post(self, request: Request, barrier: threading.Barrier | None = None) -> None:
        session = requests.Session() if barrier is not None else self._session()
        status, body, attempts = None, None, 0
        while attempts < 6:
            attempts += 1
            if barrier is not None and attempts == 1:
                barrier.wait()
            try:
                response = session.post(self.url, data=request.raw, headers=request.headers, timeout=60)
                status = response.status_code
                try:
                    body = response.json()
                except ValueError:
                    body = response.text[:200]
            except requests.RequestException as exc:
                status, body = None, f"{type(exc).__name__}: {exc}"
            if request.label != "valid" or (status is not None and 200 <= status < 300):
                break
            time.sleep(0.5 * attempts)
        with self._lock:
            self.results.append(Sent(request, status, body, attempts))


# -- processes ---------------------------------------------------------------------------------


def cli() -> list[str]:
    script = Path(sys.executable).with_name("visma-webhooks")
    return [str(script)] if script.exists() else [sys.executable, "-m", "visma_webhooks_local.cli"]


def _stop(process: subprocess.Popen, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class Kill:
    pid: int
    at: float  # seconds since the start of the run
    effects_by_pid: int
    last_effect_ago: float
    wall: float = 0.0  # time.time() of the kill


class Workers:
    """The ``visma-webhooks process`` subprocesses: start, kill -9, restart, stop."""

    def __init__(self, workdir: Path, state_file: Path, env: dict[str, str], pollers: int):
        self.workdir = workdir
        self.state_file = state_file
        self.env = env
        self.pollers = pollers
        self.running: dict[int, subprocess.Popen] = {}  # slot → process
        self.pids: list[int] = []
        self._count = 0

    def start(self, slot: int) -> int:
        self._count += 1
        n = self._count
        with open(self.workdir / f"process-{n}.out", "wb") as out:
            process = subprocess.Popen(
                [
                    *cli(),
                    "process",
                    "--pollers",
                    str(self.pollers),
                    "--quiet",
                    "--state-file",
                    str(self.state_file),
                    "--function-logs",
                    str(self.workdir / f"process-{n}.log"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        self.running[slot] = process
        self.pids.append(process.pid)
        return process.pid

    def kill(self, slot: int) -> int:
        process = self.running.pop(slot)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return process.pid

    def stop_all(self) -> dict[int, int]:
        codes = {}
        for slot in list(self.running):
            process = self.running.pop(slot)
            codes[process.pid] = _stop(process, 40)
        return codes

    def crashed(self) -> list[tuple[int, int]]:
        """(slot, exit code) of processes that ended on their own."""
        return [(s, p.returncode) for s, p in self.running.items() if p.poll() is not None]


class EffectWatcher:
    """Follows the counting handler's files: effects per process and when each last grew."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.sizes: dict[str, int] = {}
        self.lines: dict[int, int] = defaultdict(int)
        self.grew: dict[int, float] = {}

    def poll(self) -> None:
        now = time.monotonic()
        for entry in os.scandir(self.directory):
            if not (entry.name.startswith("effects-") and entry.name.endswith(".jsonl")):
                continue
            size = entry.stat().st_size
            before = self.sizes.get(entry.name, 0)
            if size > before:
                with open(entry.path, "rb") as file:
                    file.seek(before)
                    chunk = file.read(size - before)
                complete = chunk.rfind(b"\n") + 1  # a line being written is counted next time
                pid = int(entry.name[len("effects-") : -len(".jsonl")])
                self.lines[pid] += chunk[:complete].count(b"\n")
                self.sizes[entry.name] = before + complete
                if complete:
                    self.grew[pid] = now

    @property
    def total(self) -> int:
        return sum(self.lines.values())


# -- reading the stack -------------------------------------------------------------------------


def queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def peek_queue(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message on ``url`` (received, then made visible again)."""
    found: dict[str, dict[str, Any]] = {}
    empty = 0
    while empty < 2:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        empty = empty + 1 if not batch else 0
        for m in batch:
            found[m["MessageId"]] = m
    for m in found.values():
        with contextlib.suppress(Exception):
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return list(found.values())


def final_outcome(record: dict[str, Any] | None) -> str | None:
    """The notification's outcome from its history, as ``status`` and ``inspect`` read it.

    A completed step wins over any later step (copies processed at the same moment append
    in the order their writes land), and a process killed between the notification's stage
    and its history write leaves only the next copy's "already processed: <outcome>".
    """
    return effective_outcome(record) if record else None


def history_without_outcome(record: dict[str, Any] | None) -> bool:
    """The notification completed, but its history lacks the step (a kill between the two writes)."""
    steps = [h.get("step") for h in (record or {}).get("history") or [] if isinstance(h, dict)]
    return bool(steps) and not any(s in COMPLETED for s in steps)


# -- the run -------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    config: dict[str, Any]
    figures: dict[str, Any]
    checks: dict[str, list[str]]  # check → violations (empty: held)
    kills: list[dict[str, Any]]
    phases: dict[str, float]
    workdir: str

    @property
    def violations(self) -> list[str]:
        return [f"{name}: {v}" for name, found in self.checks.items() for v in found]

    @property
    def ok(self) -> bool:
        return not self.violations and self.figures.get("lost") == 0


class Soak:
    def __init__(self, config: SoakConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console(highlight=False)
        self.rng = random.Random(config.seed)
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}
        self.kills: list[Kill] = []
        self.notes: list[str] = []

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f} s[/] {text}", soft_wrap=True)

    # -- setup --------------------------------------------------------------------------

    def run(self) -> SoakResult:
        c = self.config
        own_dir = c.workdir is None
        workdir = Path(tempfile.mkdtemp(prefix="visma-soak-")) if own_dir else Path(c.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        effects_dir = workdir / "effects"
        effects_dir.mkdir(exist_ok=True)
        self.workdir = workdir
        hang = c.processor_timeout + 1.0
        visma = FaultyVisma(c, hang).start()
        stack = None
        workers = None
        try:
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                EFFECTS_ENV: str(effects_dir),
                "COLUMNS": "200",
            }
            for name in ("VISMA_WEBHOOK_SECRET", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
                env.pop(name, None)
            state_file = workdir / "local.json"
            stack = self._start_stack(workdir, state_file, visma, env)
            state = StackState.load(state_file)
            sqs = state.client("sqs")
            store = DynamoDBOutcomeStore(state.table_name, state.client("dynamodb"), 0)
            workers = Workers(workdir, state_file, env, c.pollers)
            result = self._run(workdir, state, sqs, store, visma, workers, stack, state_file, env)
        finally:
            if workers is not None:
                workers.stop_all()
            if stack is not None:
                _stop(stack)
            visma.stop()
        if own_dir and not c.keep and result.ok:
            shutil.rmtree(workdir, ignore_errors=True)
            result.workdir = "(removed: the run passed)"
        return result

    def _start_stack(self, workdir: Path, state_file: Path, visma: VismaSandbox, env: dict[str, str]):
        c = self.config
        command = [
            *cli(),
            "local",
            "--port",
            "0",
            "--no-processor",
            "--quiet",
            "--state-file",
            str(state_file),
            "--function-logs",
            str(workdir / "functions.log"),
            "--visma-base-url",
            visma.url,
            "--token-url",
            visma.token_url,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--webhook-secret",
            SECRET,
            "--handler-modules",
            "benchmarks.soak_handlers",
            "--max-receive-count",
            str(c.max_receive_count),
            "--visibility-timeout",
            str(c.visibility_timeout),
            "--processor-timeout",
            str(c.processor_timeout),
            "--retry-base-seconds",
            str(c.retry_base_seconds),
        ]
        with open(workdir / "local.out", "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"visma-webhooks local exited {process.returncode}:\n"
                    + (workdir / "local.out").read_text(errors="replace")
                )
            with contextlib.suppress(Exception):
                if StackState.load(state_file).pid == process.pid:
                    return process
            time.sleep(0.2)
        _stop(process)
        raise RuntimeError("visma-webhooks local did not start within 90 s")

    # -- phases -------------------------------------------------------------------------

    def _run(
        self,
        workdir: Path,
        state: StackState,
        sqs: Any,
        store: DynamoDBOutcomeStore,
        visma: FaultyVisma,
        workers: Workers,
        stack: subprocess.Popen,
        state_file: Path,
        env: dict[str, str],
    ) -> SoakResult:
        c = self.config
        rng = self.rng
        planned = plan(c, rng)
        valid = valid_requests(planned, c, rng)
        n_extra = max(11, round(len(valid) * 0.05))
        forged = forged_requests(c.forged if c.forged is not None else n_extra, rng)
        malformed = malformed_requests(c.malformed if c.malformed is not None else n_extra, rng)
        jobs = schedule(valid, forged + malformed, c, rng)
        by_nid = {p.nid: p for p in planned}
        self.phases["setup"] = time.monotonic() - self.started
        self.say(
            f"local stack up ({state.webhook_url}); sending {len(planned)} notifications in {len(valid)} "
            f"requests, each twice, with {len(forged)} forged and {len(malformed)} malformed requests"
        )

        # Phase 1: send, process with faults, kill and restart.
        for slot in range(c.processes):
            workers.start(slot)
        sender = Sender(
            state.webhook_url,
            jobs,
            c.senders,
            backlog=lambda: queue_depth(sqs, state.queue_url),
            max_backlog=c.max_backlog,
        ).start()
        expected_effects = sum(p.kind == "ok" for p in planned)
        # One kill in each of ``kills`` equal slices of the expected effects, at a random point of it.
        thresholds = [
            (0.05 + 0.8 * (i + rng.uniform(0.1, 0.9)) / max(1, c.kills)) * expected_effects
            for i in range(c.kills)
        ]
        watcher = EffectWatcher(workdir / "effects")
        restarts: dict[int, float] = {}  # slot → when to start it again
        quiet_since: float | None = None
        phase_started = time.monotonic()
        deadline = self.started + c.timeout
        sending_done_at = None
        timed_out = False
        last_report = 0.0
        while True:
            now = time.monotonic()
            watcher.poll()
            for slot, code in workers.crashed():
                workers.running.pop(slot)
                self.notes.append(f"a processor process ended by itself (exit {code}); started again")
                restarts[slot] = now
            for slot, at in list(restarts.items()):
                if now >= at:
                    del restarts[slot]
                    workers.start(slot)
            if len(self.kills) < len(thresholds) and watcher.total >= thresholds[len(self.kills)]:
                self._kill_one(workers, watcher, restarts, rng)
            if sender.done.is_set() and sending_done_at is None:
                sending_done_at = now
                self.say(f"all {len(sender.results)} requests answered; processing goes on")
            if now - last_report > 15:
                last_report = now
                self.say(
                    f"effects {watcher.total}/{expected_effects}, kills {len(self.kills)}/{c.kills}, "
                    f"queue {queue_depth(sqs, state.queue_url)}, DLQ {queue_depth(sqs, state.dlq_url)}"
                )
            settled = sender.done.is_set() and len(self.kills) >= len(thresholds) and not restarts
            if settled and queue_depth(sqs, state.queue_url) == 0:
                quiet_since = quiet_since or now
                if now - quiet_since >= 1.5:
                    break
            else:
                quiet_since = None
            if now > deadline:
                timed_out = True
                break
            time.sleep(0.05 if not settled else 0.5)
        self.phases["send and process"] = time.monotonic() - phase_started
        self.say(
            f"queue drained: {watcher.total} effects, {len(self.kills)} kills; "
            f"DLQ {queue_depth(sqs, state.dlq_url)}"
        )
        codes = workers.stop_all()
        phase1 = self._snapshot(visma, store, workdir)
        dlq_messages = peek_queue(sqs, state.dlq_url)
        self.phases["stop and read"] = time.monotonic() - phase_started - self.phases["send and process"]

        # Phase 2: fix Visma, replay the DLQ, drain again.
        phase_started = time.monotonic()
        visma.fix()
        workers.start(0)
        replay = subprocess.run(
            [*cli(), "replay", "--state-file", str(state_file)],
            capture_output=True,
            text=True,
            env=env,
            cwd=workdir,
            timeout=120,
            check=False,
        )
        moved = _moved(replay.stdout)
        replay_deadline = time.monotonic() + max(60, c.timeout - (time.monotonic() - self.started))
        quiet_since = None
        while time.monotonic() < replay_deadline:
            if queue_depth(sqs, state.queue_url) == 0 and queue_depth(sqs, state.dlq_url) == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 1.5:
                    break
            else:
                quiet_since = None
            time.sleep(0.3)
        codes.update(workers.stop_all())
        final = self._snapshot(visma, store, workdir)
        final["queue"] = queue_depth(sqs, state.queue_url)
        final["dlq"] = queue_depth(sqs, state.dlq_url)
        self.phases["replay"] = time.monotonic() - phase_started
        self.say(f"replay moved {moved}; queue {final['queue']}, DLQ {final['dlq']}")

        stack_code = _stop(stack)
        self.phases["total"] = time.monotonic() - self.started
        return self._judge(
            planned,
            by_nid,
            valid,
            forged,
            malformed,
            sender,
            phase1,
            final,
            dlq_messages,
            replay,
            moved,
            codes,
            stack_code,
            timed_out,
            expected_effects,
            visma,
        )

    def _kill_one(
        self, workers: Workers, watcher: EffectWatcher, restarts: dict[int, float], rng: random.Random
    ) -> None:
        now = time.monotonic()
        busy = sorted(
            slot for slot, p in workers.running.items() if now - watcher.grew.get(p.pid, -1e9) < 0.3
        )
        if not busy:
            return  # wait until a process is mid-batch
        slot = rng.choice(busy)
        if rng.random() < 0.5:
            # Half the kills land as soon as a handler has counted an effect (within a few ms):
            # the window between a handler's run and the record of its success.
            seen = {s: watcher.lines.get(workers.running[s].pid, 0) for s in busy}
            deadline = time.monotonic() + 2.0
            while True:
                watcher.poll()
                fresh = [s for s in busy if watcher.lines.get(workers.running[s].pid, 0) > seen[s]]
                if fresh:
                    slot = fresh[0]
                    break
                if time.monotonic() >= deadline:
                    return  # the batches went quiet (waiting on Visma): try again later
                time.sleep(0.002)
        else:  # the others anywhere within 150 ms of the batch going on
            time.sleep(rng.uniform(0, 0.15))
        watcher.poll()
        pid = workers.running[slot].pid
        ago = time.monotonic() - watcher.grew.get(pid, 0)
        wall = time.time()
        workers.kill(slot)
        kill = Kill(
            pid, round(time.monotonic() - self.started, 2), watcher.lines.get(pid, 0), round(ago, 3), wall
        )
        self.kills.append(kill)
        restarts[slot] = time.monotonic() + rng.uniform(0.3, 1.5)
        self.say(
            f"[red]kill -9[/] processor pid {pid} ({kill.effects_by_pid} effects so far, last one "
            f"{ago * 1000:.0f} ms before the kill)"
        )

    def _snapshot(self, visma: FaultyVisma, store: DynamoDBOutcomeStore, workdir: Path) -> dict[str, Any]:
        return {
            "feedback": visma.feedback,
            "requests": visma.requests,
            "effects": read_effects(workdir / "effects"),
            "records": {r["notification_id"]: r for r in store.scan() if r.get("notification_id")},
        }

    # -- judging ------------------------------------------------------------------------

    def _judge(
        self,
        planned: list[Planned],
        by_nid: dict[str, Planned],
        valid: list[Request],
        forged: list[Request],
        malformed: list[Request],
        sender: Sender,
        phase1: dict[str, Any],
        final: dict[str, Any],
        dlq_messages: list[dict[str, Any]],
        replay: subprocess.CompletedProcess,
        moved: int | None,
        codes: dict[int, int],
        stack_code: int,
        timed_out: bool,
        expected_effects: int,
        visma: FaultyVisma,
    ) -> SoakResult:
        c = self.config
        checks: dict[str, list[str]] = defaultdict(list)
        killed = {k.pid: k.wall for k in self.kills}
        if timed_out:
            checks["the run finished in time"].append(f"not drained within {c.timeout:.0f} s")

        # Answers.
        answers = checks["every request got the answer it should"]
        accepted = 0
        answered = Counter()
        for s in sender.results:
            answered[s.request.label.split(":")[0]] += 1
            if s.status not in s.request.expect:
                answers.append(f"{s.request.label}: HTTP {s.status} {str(s.body)[:120]}")
                continue
            if s.request.label == "valid":
                got = s.body.get("accepted") if isinstance(s.body, dict) else None
                accepted += got or 0
                if got != len(s.request.nids) or (isinstance(s.body, dict) and s.body.get("rejected")):
                    answers.append(f"valid request of {len(s.request.nids)}: {str(s.body)[:160]}")
        ingest_retries = sum(s.attempts - 1 for s in sender.results)
        expected_requests = 2 * len(valid) + len(forged) + len(malformed)
        if len(sender.results) != expected_requests:
            answers.append(f"{len(sender.results)} requests answered of {expected_requests}")

        # Forged and malformed: never anywhere.
        hostile = {nid for r in forged + malformed for nid in r.nids}
        safety = checks["no forged or malformed notification was processed"]
        for where, ids in (
            ("outcome records", set(final["records"])),
            ("feedback", {f["notificationId"] for f in final["feedback"]}),
            ("handler effects", {e["id"] for e in final["effects"]}),
            ("the DLQ", {message_attribute(m, "notification_id") for m in dlq_messages}),
        ):
            if hostile & ids:
                safety.append(f"{len(hostile & ids)} in {where}")
        fetched_hostile = [
            r["path"] for r in final["requests"] if "/forged-" in r["path"] or "/malformed-" in r["path"]
        ]
        if fetched_hostile:
            safety.append(f"Visma was asked for {fetched_hostile[:3]}")
        unknown = set(final["records"]) - set(by_nid) - hostile
        if unknown:
            safety.append(f"{len(unknown)} outcome records of unknown notifications")

        # The DLQ after phase 1.
        dlq_check = checks["the DLQ holds only what was designed to fail"]
        dlq_nids: Counter[str] = Counter()
        for m in dlq_messages:
            nid = message_attribute(m, "notification_id")
            p = by_nid.get(nid or "")
            if p is None:
                dlq_check.append(f"message {m['MessageId']} is no valid notification ({m['Body'][:80]})")
                continue
            dlq_nids[nid] += 1
            record = phase1["records"].get(nid) or {}
            steps = [h.get("step") for h in record.get("history") or []]
            if p.kind == "missing" and not any(s in TRANSIENT_STEPS for s in steps):
                dlq_check.append(f"{nid} (404) is in the DLQ without a transient failure")
            receives = int((m.get("Attributes") or {}).get("ApproximateReceiveCount", "0"))
            if receives and receives < c.max_receive_count:
                dlq_check.append(f"{nid} went to the DLQ after {receives} receives")
        outage = {p.nid for p in planned if p.kind == "outage"}
        for nid in outage:
            if dlq_nids[nid] != 2:
                dlq_check.append(f"outage notification {nid} has {dlq_nids[nid]} copies in the DLQ, not 2")
        in_dlq = set(dlq_nids)

        # Feedback.
        fb = checks["every valid notification got exactly one feedback with the right isSuccess"]
        reposts_after_kill = 0
        superseded = 0

        def deduplicated(feedback: list[dict[str, Any]], when: str) -> dict[str, list[bool]]:
            nonlocal reposts_after_kill
            posts: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)
            for f in feedback:
                posts[(f["notificationId"], f["isSuccess"])].append(f)
            kept: dict[str, list[bool]] = defaultdict(list)
            for (nid, success), found in posts.items():
                for extra in found[:-1]:
                    if extra.get("pid") in killed:
                        reposts_after_kill += when == "final"
                    else:
                        fb.append(
                            f"{nid}: feedback isSuccess={success} posted {len(found)} times "
                            f"(by pids {[f.get('pid') for f in found]}, none killed before the repeat)"
                        )
                kept[nid].append(success)
            return kept

        before = deduplicated(phase1["feedback"], "phase 1")
        after = deduplicated(final["feedback"], "final")
        last: dict[str, bool] = {f["notificationId"]: f["isSuccess"] for f in final["feedback"]}
        lost: list[str] = []
        for p in planned:
            b, a = set(before.get(p.nid, [])), set(after.get(p.nid, []))
            record = final["records"].get(p.nid)
            outcome = final_outcome(record)
            right = p.kind != "missing"
            if p.nid in in_dlq:
                if p.kind == "missing" and True in b:
                    fb.append(f"{p.nid} (404): a success feedback")
            elif b != {right}:
                fb.append(f"{p.nid} ({p.kind}) before the replay: feedback {sorted(b)}, expected [{right}]")
            if p.kind == "missing":
                if a != {False}:
                    fb.append(f"{p.nid} (404): final feedback {sorted(a)}, expected [False]")
            elif True not in a:
                fb.append(f"{p.nid}: no success feedback at the end ({sorted(a)})")
            elif last.get(p.nid) is not True:
                fb.append(f"{p.nid}: the last feedback Visma shows is a failure, after the success")
            elif False in a:
                if p.nid in in_dlq:
                    superseded += 1
                else:
                    fb.append(f"{p.nid}: a failure feedback, yet no copy went to the DLQ")
            expected_outcome = "failed" if p.kind == "missing" else "succeeded"
            right_feedback = a == {False} if p.kind == "missing" else last.get(p.nid) is True
            if outcome != expected_outcome or not right_feedback:
                lost.append(p.nid)

        # Handler effects.
        ef = checks["every handler effect happened exactly once"]
        effects: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in final["effects"]:
            effects[e["id"]].append(e)
        effects_before: Counter[str] = Counter(e["id"] for e in phase1["effects"])
        reruns_after_kill = 0
        for p in planned:
            runs = sorted(effects.get(p.nid, []), key=lambda e: e["at"])
            if p.kind == "ok" and not runs:
                ef.append(f"{p.nid}: the handler never ran")
            if p.kind == "missing" and runs:
                ef.append(f"{p.nid} (404): the handler ran {len(runs)} times")
            if p.kind == "outage" and effects_before[p.nid]:
                ef.append(f"{p.nid} (outage): the handler ran before Visma was fixed")
            for e in runs[:-1]:
                if e["pid"] in killed and e["at"] <= killed[e["pid"]]:
                    reruns_after_kill += 1
                else:
                    ef.append(
                        f"{p.nid}: the handler ran {len(runs)} times (pids {[r['pid'] for r in runs]}); "
                        f"pid {e['pid']} was not killed after its run"
                    )
        committed = sum(1 for p in planned if p.kind != "missing" and effects.get(p.nid))

        # Replay.
        rp = checks["replay after the fix drains the DLQ to success"]
        if replay.returncode != 0:
            rp.append(f"visma-webhooks replay exited {replay.returncode}: {replay.stderr[-300:]}")
        if moved is not None and moved != len(dlq_messages):
            rp.append(f"replay moved {moved} of the {len(dlq_messages)} DLQ messages")
        if final["queue"] or final["dlq"]:
            rp.append(f"after the replay: queue {final['queue']}, DLQ {final['dlq']}")
        for nid in in_dlq:
            p = by_nid[nid]
            record = final["records"].get(nid)
            outcome = final_outcome(record)
            if outcome != ("failed" if p.kind == "missing" else "succeeded"):
                rp.append(f"{nid} ({p.kind}) ended {outcome}")

        # Processes.
        pr = checks["processes stopped cleanly"]
        for pid, code in codes.items():
            if code != 0:
                pr.append(f"visma-webhooks process (pid {pid}) exited {code} on SIGTERM")
        if stack_code != 0:
            pr.append(f"visma-webhooks local exited {stack_code} on SIGTERM")
        if len(self.kills) < c.kills:
            checks["the processor was killed mid-batch as planned"].append(
                f"{len(self.kills)} kills of {c.kills}"
            )
        else:
            checks["the processor was killed mid-batch as planned"].extend(
                f"the kill of pid {k.pid} came {k.last_effect_ago:.2f} s after its last effect"
                for k in self.kills
                if k.last_effect_ago > 0.5
            )

        # Figures.
        records = final["records"]
        steps = Counter(
            h.get("step") for nid, r in records.items() if nid in by_nid for h in r.get("history") or []
        )
        outcomes = Counter(final_outcome(records[p.nid]) if p.nid in records else "none" for p in planned)
        faults = Counter(r.get("fault") for r in phase1["requests"] if r.get("fault"))
        visma_calls = len(final["requests"])
        phase1_calls = len(phase1["requests"])
        figures = {
            "notifications": len(planned),
            "resources 404": sum(p.kind == "missing" for p in planned),
            "resources in an outage until the fix": len(outage),
            "dispatcher deliveries": sum(p.fmt == "dispatcher" for p in planned),
            "valid requests (each sent twice)": len(valid),
            "requests sent": len(sender.results),
            "forged requests (401)": sum(
                1 for s in sender.results if s.request.label.startswith("forged") and s.status == 401
            ),
            "malformed requests (400/413)": sum(
                1
                for s in sender.results
                if s.request.label.startswith("malformed") and s.status in s.request.expect
            ),
            "ingest retries (non-2xx answers)": ingest_retries,
            "sending paused for the queue (s)": round(sender.paused / max(1, c.senders), 1),
            "accepted": accepted,
            "processed": outcomes["succeeded"] + outcomes["failed"],
            "succeeded": outcomes["succeeded"],
            "failed (404, failure feedback)": outcomes["failed"],
            "duplicates absorbed": accepted - len(planned),
            "duplicates seen by the dedup table": steps["duplicate"],
            "retries": steps["retrying"] + steps["throttled"],
            "retries after a 429 (throttled)": steps["throttled"],
            "Visma calls": visma_calls,
            "Visma faults injected": dict(sorted(faults.items(), key=lambda kv: str(kv[0]))),
            "Visma fault rate before the fix (outage aside)": round(
                (faults["5xx"] + faults["429"] + faults["timeout"]) / max(1, phase1_calls), 3
            ),
            "kills (kill -9 mid-batch)": len(self.kills),
            "handler effects committed": committed,
            "histories completed by a later copy (kill between stage and history)": sum(
                history_without_outcome(records.get(p.nid)) and final_outcome(records.get(p.nid)) is not None
                for p in planned
            ),
            "handler re-runs after kill -9": reruns_after_kill,
            "feedback posts": len(final["feedback"]),
            "feedback re-posted after kill -9": reposts_after_kill,
            "gave-up notices superseded by the replay's success": superseded,
            "gave-up notices by last error": dict(
                Counter(
                    re.sub(r"^gave up after \d+ attempts: ", "", str(f.get("description"))).split(":")[0]
                    for f in final["feedback"]
                    if str(f.get("description") or "").startswith("gave up")
                ).most_common()
            ),
            "DLQ": len(dlq_messages),
            "DLQ notifications": len(in_dlq),
            "DLQ notifications (outage)": len(in_dlq & outage),
            "DLQ notifications (fault rate and kills)": len(in_dlq - outage),
            "replayed": moved if moved is not None else len(dlq_messages),
            "lost": len(lost),
        }
        if lost:
            checks["nothing was lost"].extend(f"{nid}" for nid in lost[:20])
        suspects = set(lost) | {v.split(" ", 1)[0].rstrip(":") for found in checks.values() for v in found}
        details = {
            nid: {
                "planned": asdict(by_nid[nid]),
                "record": final["records"].get(nid),
                "feedback": [f for f in final["feedback"] if f["notificationId"] == nid],
                "effects": effects.get(nid, []),
                "in_dlq": dlq_nids.get(nid, 0),
            }
            for nid in sorted(suspects)
            if nid in by_nid
        }
        if details:
            (self.workdir / "violations.json").write_text(json.dumps(details, indent=2, default=str))
        else:
            checks["nothing was lost"]
        for name in (
            "every request got the answer it should",
            "no forged or malformed notification was processed",
            "the DLQ holds only what was designed to fail",
            "replay after the fix drains the DLQ to success",
        ):
            checks[name]
        config = {k: v for k, v in asdict(c).items() if k not in ("workdir", "keep", "results")}
        return SoakResult(
            config=config,
            figures=figures,
            checks=dict(checks),
            kills=[{k: v for k, v in asdict(kill).items() if k != "wall"} for kill in self.kills],
            phases={k: round(v, 1) for k, v in self.phases.items()},
            workdir=str(self.workdir),
        )


def _moved(output: str) -> int | None:
    match = re.search(r"moved to the queue\D*(\d+)", output)
    return int(match.group(1)) if match else None


# -- output ---------------------------------------------------------------------------------------


def summary(result: SoakResult, console: Console) -> None:
    f = result.figures
    table = Table(
        title="Soak: the pipeline under faults, duplicates, forgeries and kill -9", title_justify="left"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "notifications",
        "requests sent",
        "accepted",
        "processed",
        "duplicates absorbed",
        "retries",
        "DLQ",
        "replayed",
        "lost",
    ):
        style = "bold red" if key == "lost" and f[key] else "bold"
        table.add_row(f"[{style}]{key}[/]", f"[{style}]{f[key]:,}[/]")
    table.add_section()
    for key, value in f.items():
        if key in (
            "notifications",
            "requests sent",
            "accepted",
            "processed",
            "duplicates absorbed",
            "retries",
            "DLQ",
            "replayed",
            "lost",
        ):
            continue
        text = ", ".join(f"{k} {v:,}" for k, v in value.items()) if isinstance(value, dict) else f"{value:,}"
        table.add_row(key, text)
    console.print(table)
    checks = Table(title="Invariants", title_justify="left")
    checks.add_column("check")
    checks.add_column("result")
    for name, violations in result.checks.items():
        if violations:
            shown = "; ".join(violations[:3]) + (
                f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
            )
            checks.add_row(name, f"[red]✗ {len(violations)}[/] {shown}")
        else:
            checks.add_row(name, "[green]✓[/]")
    console.print(checks)
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items())
    console.print(
        f"[dim]{phases}; seed {result.config['seed']}; work directory {result.workdir}[/]", soft_wrap=True
    )
    console.print("[bold green]soak passed[/]" if result.ok else "[bold red]soak FAILED[/]")


def write_results(result: SoakResult, path: Path) -> None:
    data = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "passed": result.ok,
        **{k: getattr(result, k) for k in ("config", "figures", "checks", "kills", "phases")},
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def run(config: SoakConfig, console: Console | None = None) -> SoakResult:
    console = console or Console(highlight=False)
    result = Soak(config, console).run()
    summary(result, console)
    if config.results is not None:
        write_results(result, config.results)
        console.print(f"[dim]figures written to {config.results}[/]")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--notifications", type=int, default=SoakConfig.notifications)
    parser.add_argument(
        "--kills", type=int, default=SoakConfig.kills, help="kill -9 of a processor mid-batch"
    )
    parser.add_argument("--seed", type=int, default=SoakConfig.seed)
    parser.add_argument("--max-receive-count", type=int, default=SoakConfig.max_receive_count)
    parser.add_argument("--processes", type=int, default=SoakConfig.processes)
    parser.add_argument("--pollers", type=int, default=SoakConfig.pollers, help="per processor process")
    parser.add_argument("--timeout", type=float, default=SoakConfig.timeout, help="seconds for the whole run")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and effects here")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    config = SoakConfig(
        notifications=args.notifications,
        kills=args.kills,
        seed=args.seed,
        max_receive_count=args.max_receive_count,
        processes=args.processes,
        pollers=args.pollers,
        timeout=args.timeout,
        workdir=args.workdir,
        keep=args.workdir is not None,
        results=args.results,
    )
    result = run(config)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
