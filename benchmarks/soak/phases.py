"""The soak run: set up the stack, send and process under faults and kills, fix Visma, replay, judge.

Phase 1 sends every request while workers process with Visma's faults on and are killed
mid-batch; it ends when the queue has stayed empty for a moment. Phase 2 fixes Visma,
runs ``visma-webhooks replay`` and waits for both queues to drain. Phase 3, the mass
update (:mod:`benchmarks.soak.mass_update`), sends one tenant's notifications at once
against a budget of several windows, with other tenants' traffic mixed in.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from benchmarks.localstack import cli, stop_process
from benchmarks.soak.invariants import Observed, Snapshot, judge
from benchmarks.soak.mass_update import MassObserved, MassUpdate, pace_processor, timeline
from benchmarks.soak.plan import ROOT, SoakConfig
from benchmarks.soak.report import SoakResult, result, violation_details
from benchmarks.soak.traffic import Sender, Workload, workload
from benchmarks.soak.visma import FaultyVisma
from benchmarks.soak.workers import (
    EFFECTS_ENV,
    EffectWatcher,
    Killer,
    Workers,
    kill_thresholds,
    read_effects,
    start_stack,
)
from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks_local.ops import queue_counts
from visma_webhooks_local.stack.state import StackState

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient

QUIET_SECONDS = 1.5  # a queue must stay empty this long to count as drained
REPORT_EVERY = 15.0  # seconds between progress lines


def queue_depth(sqs: SQSClient, url: str) -> int:
    return sum(queue_counts(sqs, url))


def peek_queue(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
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
            found[m["MessageId"]] = dict(m)
    for message in found.values():
        with contextlib.suppress(Exception):
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    return list(found.values())


def replayed_count(output: str) -> int | None:
    """The number of messages ``visma-webhooks replay`` reports it moved."""
    match = re.search(r"moved to the queue\D*(\d+)", output)
    return int(match.group(1)) if match else None


class Quiet:
    """Whether a condition has held, unbroken, for ``seconds``."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.since: float | None = None

    def held(self, condition: bool, now: float) -> bool:
        if not condition:
            self.since = None
            return False
        self.since = self.since or now
        return now - self.since >= self.seconds


@dataclass
class Pipeline:
    """The running pieces the phases act on."""

    workdir: Path
    state_file: Path
    env: dict[str, str]
    state: StackState
    sqs: SQSClient
    store: DynamoDBOutcomeStore
    visma: FaultyVisma
    stack: subprocess.Popen[bytes]
    workers: Workers

    def depth(self) -> int:
        return queue_depth(self.sqs, self.state.queue_url)

    def dlq_depth(self) -> int:
        return queue_depth(self.sqs, self.state.dlq_url)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            feedback=self.visma.feedback,
            requests=self.visma.requests,
            effects=read_effects(self.workdir / "effects"),
            records={r.notification_id: r for r in self.store.scan() if r.notification_id},
        )


@dataclass
class PhaseOne:
    sender: Sender
    killer: Killer
    timed_out: bool


class Soak:
    def __init__(self, config: SoakConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console(highlight=False)
        self.rng = random.Random(config.seed)
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}
        self._last_report = 0.0
        self._sending_done = False

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f} s[/] {text}", soft_wrap=True)

    def run(self) -> SoakResult:
        """The whole run; its own work directory (a temp dir) is removed if the run passed."""
        c = self.config
        workdir = Path(tempfile.mkdtemp(prefix="visma-soak-")) if c.workdir is None else Path(c.workdir)
        (workdir / "effects").mkdir(parents=True, exist_ok=True)
        visma = FaultyVisma(c, hang_seconds=c.processor_timeout + 1.0)
        visma.start()
        stack: subprocess.Popen[bytes] | None = None
        workers: Workers | None = None
        try:
            env = self._environment(workdir / "effects")
            state_file = workdir / "local.json"
            stack = start_stack(c, workdir, state_file, visma, env)
            changed = pace_processor(state_file, c)
            if changed:
                self.say(f"the processor's budget settings set in the state file: {changed}")
            state = StackState.load(state_file)
            store = DynamoDBOutcomeStore(state.table_name, state.client("dynamodb"), 0)
            workers = Workers(workdir, state_file, env, c.pollers)
            pipeline = Pipeline(
                workdir, state_file, env, state, state.client("sqs"), store, visma, stack, workers
            )
            outcome = self._run(pipeline)
        finally:
            if workers is not None:
                workers.stop_all()
            if stack is not None:
                stop_process(stack)
            visma.stop()
        if c.workdir is None and not c.keep and outcome.ok:
            shutil.rmtree(workdir, ignore_errors=True)
            outcome.workdir = "(removed: the run passed)"
        return outcome

    def _environment(self, effects_dir: Path) -> dict[str, str]:
        """This environment, the repository importable, the effects directory named.

        Without an AWS profile or endpoint, or a webhook secret, that would point the stack elsewhere.
        """
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            EFFECTS_ENV: str(effects_dir),
            "COLUMNS": "200",
        }
        for name in ("VISMA_WEBHOOK_SECRET", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
            env.pop(name, None)
        return env

    def _run(self, p: Pipeline) -> SoakResult:
        c = self.config
        w = workload(c, self.rng)
        self.phases["setup"] = time.monotonic() - self.started
        self.say(
            f"local stack up ({p.state.webhook_url}); sending {len(w.planned)} notifications in {len(w.valid)} "
            f"requests, each twice, with {len(w.forged)} forged and {len(w.malformed)} malformed requests"
        )
        phase_started = time.monotonic()
        one = self._send_and_process(p, w)
        self.phases["send and process"] = time.monotonic() - phase_started
        self.say(
            f"queue drained: {one.killer.watcher.total} effects, {len(one.killer.kills)} kills; "
            f"DLQ {p.dlq_depth()}"
        )
        codes = p.workers.stop_all()
        phase1 = p.snapshot()
        dlq_messages = peek_queue(p.sqs, p.state.dlq_url)
        self.phases["stop and read"] = time.monotonic() - phase_started - self.phases["send and process"]

        phase_started = time.monotonic()
        replay, moved = self._fix_and_replay(p)
        codes.update(p.workers.stop_all())
        final = p.snapshot()
        final.queue, final.dlq = p.depth(), p.dlq_depth()
        self.phases["replay"] = time.monotonic() - phase_started
        self.say(f"replay moved {moved}; queue {final.queue}, DLQ {final.dlq}")

        mass: MassObserved | None = None
        if c.mass_update > 0:
            phase_started = time.monotonic()
            mass = MassUpdate(c, p, self.rng, self.say).run()
            codes.update(mass.codes)
            self.phases["mass update"] = time.monotonic() - phase_started
            self.say(f"mass update done; queue {mass.queue}, DLQ {mass.dlq}")
            (p.workdir / "mass-update.json").write_text(json.dumps(timeline(mass), indent=1))

        stack_code = stop_process(p.stack)
        self.phases["total"] = time.monotonic() - self.started
        observed = Observed(
            workload=w,
            sent=one.sender.results,
            sending_paused=one.sender.paused,
            kills=one.killer.kills,
            timed_out=one.timed_out,
            phase1=phase1,
            dlq_messages=dlq_messages,
            replay=replay,
            moved=moved,
            final=final,
            codes=codes,
            stack_code=stack_code,
            mass=mass,
        )
        judgement = judge(c, observed)
        details = violation_details(observed, judgement)
        if details:
            (p.workdir / "violations.json").write_text(json.dumps(details, indent=2, default=str))
        return result(c, observed, judgement, self.phases, p.workdir)

    # -- phase 1 ---------------------------------------------------------------------------

    def _send_and_process(self, p: Pipeline, w: Workload) -> PhaseOne:
        """Send everything with the workers running, killing one at each threshold, until the queue drains."""
        c = self.config
        for slot in range(c.processes):
            p.workers.start(slot)
        sender = Sender(p.state.webhook_url, w.jobs, c.senders, backlog=p.depth, max_backlog=c.max_backlog)
        sender.start()
        watcher = EffectWatcher(p.workdir / "effects")
        thresholds = kill_thresholds(c, w.expected_effects, self.rng)
        killer = Killer(p.workers, watcher, thresholds, self.rng, self.started)
        quiet = Quiet(QUIET_SECONDS)
        deadline = self.started + c.timeout
        while True:
            now = time.monotonic()
            self._tend(p.workers, killer, now)
            self._progress(p, sender, killer, w.expected_effects, now)
            settled = sender.done.is_set() and killer.done and not p.workers.restarts
            if quiet.held(settled and p.depth() == 0, now):
                return PhaseOne(sender, killer, timed_out=False)
            if now > deadline:
                return PhaseOne(sender, killer, timed_out=True)
            time.sleep(0.5 if settled else 0.05)

    def _tend(self, workers: Workers, killer: Killer, now: float) -> None:
        """Restart what crashed or is due, and kill a worker when the effects pass the next threshold."""
        killer.watcher.poll()
        for code in workers.restart_crashed(now):
            self.say(f"a processor process ended by itself (exit {code}); starting it again")
        workers.start_due(now)
        if not killer.due():
            return
        kill = killer.kill_one()
        if kill is not None:
            self.say(
                f"[red]kill -9[/] processor pid {kill.pid} ({kill.effects_by_pid} effects so far, last one "
                f"{kill.last_effect_ago * 1000:.0f} ms before the kill)"
            )

    def _progress(self, p: Pipeline, sender: Sender, killer: Killer, expected: int, now: float) -> None:
        if sender.done.is_set() and not self._sending_done:
            self._sending_done = True
            self.say(f"all {len(sender.results)} requests answered; processing goes on")
        if now - self._last_report > REPORT_EVERY:
            self._last_report = now
            self.say(
                f"effects {killer.watcher.total}/{expected}, kills {len(killer.kills)}/{self.config.kills}, "
                f"queue {p.depth()}, DLQ {p.dlq_depth()}"
            )

    # -- phase 2 ---------------------------------------------------------------------------

    def _fix_and_replay(self, p: Pipeline) -> tuple[subprocess.CompletedProcess[str], int | None]:
        """Fix Visma, replay the DLQ with one worker running, and wait until both queues drain."""
        p.visma.fix()
        p.workers.start(0)
        replay = subprocess.run(
            [*cli(), "replay", "--state-file", str(p.state_file)],
            capture_output=True,
            text=True,
            env=p.env,
            cwd=p.workdir,
            timeout=120,
            check=False,
        )
        deadline = time.monotonic() + max(60, self.config.timeout - (time.monotonic() - self.started))
        quiet = Quiet(QUIET_SECONDS)
        while time.monotonic() < deadline:
            if quiet.held(p.depth() == 0 and p.dlq_depth() == 0, time.monotonic()):
                break
            time.sleep(0.3)
        return replay, replayed_count(replay.stdout)
