"""The soak's mass-update phase: one tenant's notifications all at once, against a budget of several windows.

The ERP's documented way to switch webhooks on for every existing record is a mass
update, which fires a notification per record at once. After the replay, with Visma
fixed, this phase:

* sets Visma's budget to ``calls_per_window`` calls per ``window_seconds`` for each
  (tenant, client) (``POST /_sandbox/budget``), so that the mass update's two calls per
  notification (its GET and its feedback) need at least :func:`~benchmarks.soak.plan.windows_at_floor`
  windows;
* stores one record per notification of a new tenant (each with a fresh
  ``lastModifiedDateTime``, as the update left it) and posts every notification at once,
  one dispatcher delivery per record, from several threads;
* meanwhile, for ``other_tenants`` other tenants, changes one of a few records and sends
  its notification, ``other_rate`` times a second each, until the mass update is done: the
  same record is named again and again with newer states, so that resource order is
  tested as well as fairness;
* processes with ``processes`` ``visma-webhooks process`` workers of ``pollers`` (at least
  2) pollers each, and waits until every notification has its feedback and the queue is
  empty.

What it observed (:class:`MassObserved`) is judged in :mod:`benchmarks.soak.invariants`
and reported in :mod:`benchmarks.soak.report`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from benchmarks.soak.plan import ENTITIES, Planned, SoakConfig, new_uuid, windows_at_floor
from benchmarks.soak.traffic import Request, _dispatcher_request
from benchmarks.soak.workers import read_effects
from visma_webhooks.adapters.outcome_store import OutcomeRecord
from visma_webhooks_local.stack.state import StackState

if TYPE_CHECKING:
    import random

    from benchmarks.soak.phases import Pipeline

CUSTOMER = 0  # ENTITIES index: a mass update of customers
MASS_FIRST_ID = 50000
OTHER_FIRST_ID = 60000
BURST_THREADS = 8
REPORT_EVERY = 15.0
# The processor's budget settings, matched to the soak's Visma.
BUDGET_VARIABLES = (
    "VISMA_BUDGET_WINDOW_SECONDS",
    "VISMA_BUDGET_ASSUMED_LIMIT",
    "VISMA_BUDGET_RESERVE_PERCENT",
)


def budget_environment(config: SoakConfig) -> dict[str, str]:
    return dict(
        zip(
            BUDGET_VARIABLES,
            (str(config.window_seconds), str(config.calls_per_window), str(config.budget_reserve_percent)),
            strict=True,
        )
    )


def pace_processor(state_file: Path, config: SoakConfig) -> dict[str, str]:
    """Make the processor's budget settings those of the soak's Visma; returns what had to change.

    ``visma-webhooks local`` passes the window and limit to the processor only for its
    embedded sandbox; against another Visma (``--visma-base-url``, as here) the template's
    defaults (3600 s) stand, and the environment of ``local`` or ``process`` cannot change
    them (the function environment is set over it). So the soak writes them into the
    processor's environment in the state file, which ``visma-webhooks process`` reads,
    before it starts any worker.
    """
    state = StackState.load(state_file)
    env = state.processor.setdefault("environment", {})
    changed = {k: v for k, v in budget_environment(config).items() if env.get(k) != v}
    if changed:
        env.update(changed)
        state.save(state_file)
    return changed


@dataclass
class Sending:
    """One notification of the phase, and how its delivery went."""

    planned: Planned
    mass: bool  # the mass update's, or another tenant's
    request: Request
    sent_at: float = 0.0  # time.time() just before the first POST
    status: int | None = None
    body: Any = None
    attempts: int = 0


@dataclass
class MassObserved:
    """Everything the phase saw."""

    mass_tenant: str
    other_tenants: list[str]
    sendings: list[Sending]
    burst_started: float  # time.time() of the first POST
    timed_out: bool
    budget: dict[str, Any]  # GET /_sandbox/budget at the end
    feedback: list[dict[str, Any]]  # the phase's notifications' feedback posts
    effects: list[dict[str, Any]]  # every effect of the run (stale state is checked over all)
    records: dict[str, OutcomeRecord]  # the phase's notifications'
    dlq_messages: list[dict[str, Any]]
    queue: int
    dlq: int
    codes: dict[int, int | None] = field(default_factory=dict)

    @property
    def nids(self) -> set[str]:
        return {s.planned.nid for s in self.sendings}

    @property
    def mass_nids(self) -> set[str]:
        return {s.planned.nid for s in self.sendings if s.mass}

    @property
    def burst_ended(self) -> float | None:
        """time.time() of the mass update's last feedback (None: none came)."""
        mass = self.mass_nids
        times = [f["at"] for f in self.feedback if f["notificationId"] in mass]
        return max(times) if times else None

    def first_feedback(self) -> dict[str, float]:
        """nid → time.time() of its first feedback."""
        first: dict[str, float] = {}
        for f in self.feedback:
            first.setdefault(f["notificationId"], f["at"])
        return first

    def latencies_during_burst(self) -> dict[str, float | None]:
        """The other tenants' notifications sent during the burst: nid → seconds to feedback (None: none)."""
        end = self.burst_ended or float("inf")
        first = self.first_feedback()
        return {
            s.planned.nid: (first[s.planned.nid] - s.sent_at) if s.planned.nid in first else None
            for s in self.sendings
            if not s.mass and self.burst_started <= s.sent_at <= end
        }

    def usage(self, tenant: str) -> dict[str, int]:
        """Calls, served, refused (429) and resets of the tenant's window(s), from /_sandbox/budget."""
        total = {"calls": 0, "served": 0, "refused": 0, "resets": 0}
        for w in self.budget.get("windows", []):
            if w.get("tenant") == tenant:
                for key in total:
                    total[key] += int(w.get(key) or 0)
        return total


def post(session: requests.Session, url: str, sending: Sending) -> None:
    """Post one delivery, again on a non-2xx answer (as the dispatcher retries); records the answer."""
    sending.sent_at = time.time()
    while sending.attempts < 6:
        sending.attempts += 1
        try:
            response = session.post(
                url, data=sending.request.raw, headers=sending.request.headers, timeout=60
            )
            sending.status = response.status_code
            try:
                sending.body = response.json()
            except ValueError:
                sending.body = response.text[:200]
        except requests.RequestException as exc:
            sending.status, sending.body = None, f"{type(exc).__name__}: {exc}"
        if sending.status is not None and 200 <= sending.status < 300:
            return
        time.sleep(0.5 * sending.attempts)


def _record(rid: str, version: int) -> dict[str, Any]:
    """A customer as the sandbox stores it; the sandbox gives it a fresh ``lastModifiedDateTime``."""
    return {"number": rid, "name": f"Customer {rid}", "webhooksEnabled": True, "version": version}


class MassUpdate:
    """The phase on a running pipeline (the workers stopped when it starts and when it ends)."""

    def __init__(
        self, config: SoakConfig, pipeline: Pipeline, rng: random.Random, say: Callable[[str], None]
    ):
        self.config = config
        self.p = pipeline
        self.rng = rng
        self.say = say
        self.mass_tenant = new_uuid(rng)
        self.other_tenants = [new_uuid(rng) for _ in range(config.other_tenants)]
        self.sendings: list[Sending] = []
        self._lock = threading.Lock()
        self._mass_done = threading.Event()

    def _sending(self, tenant: str, rid: str, mass: bool) -> Sending:
        planned = Planned(
            new_uuid(self.rng), tenant, f"/v1/{ENTITIES[CUSTOMER][0]}/{rid}", "ok", "dispatcher", 0
        )
        sending = Sending(planned, mass, _dispatcher_request(planned, self.rng))
        with self._lock:
            self.sendings.append(sending)
        return sending

    def run(self) -> MassObserved:
        c, p = self.config, self.p
        p.visma.set_budget(calls_per_window=c.calls_per_window, window_seconds=c.window_seconds)
        burst = []
        for i in range(c.mass_update):
            rid = str(MASS_FIRST_ID + i)
            p.visma.set_resource(f"/v1/customer/{rid}", _record(rid, 1))
            burst.append(self._sending(self.mass_tenant, rid, mass=True))
        self.say(
            f"mass update: {c.mass_update} notifications for one tenant at once, Visma's budget "
            f"{c.calls_per_window} calls per {c.window_seconds:.0f} s (at least {windows_at_floor(c)} windows), "
            f"{c.other_tenants} other tenants at {c.other_rate:g}/s each"
        )
        for slot in range(c.processes):
            p.workers.start(slot)
        burst_started = time.time()
        threads = [
            threading.Thread(target=self._send_burst, args=(burst[k::BURST_THREADS],), daemon=True)
            for k in range(BURST_THREADS)
        ]
        threads += [
            threading.Thread(target=self._send_other, args=(t, tenant), daemon=True)
            for t, tenant in enumerate(self.other_tenants)
        ]
        for thread in threads:
            thread.start()
        timed_out = self._wait(time.monotonic() + self.deadline())
        self._mass_done.set()
        for thread in threads:
            thread.join(timeout=90)
        if not timed_out:  # what the others sent last must be processed too
            timed_out = self._wait(time.monotonic() + 120, everything=True)
        codes = p.workers.stop_all()
        return self._observe(burst_started, timed_out, codes)

    def deadline(self) -> float:
        """A guard against a hang: four times the windows the floor needs, and two minutes."""
        return 4 * (windows_at_floor(self.config) + 1) * self.config.window_seconds + 120

    def _send_burst(self, part: list[Sending]) -> None:
        session = requests.Session()
        for sending in part:
            post(session, self.p.state.webhook_url, sending)

    def _send_other(self, index: int, tenant: str) -> None:
        """A change and its notification every 1/other_rate s, round the tenant's few records."""
        c = self.config
        session = requests.Session()
        interval = 1.0 / c.other_rate
        start = time.monotonic() + self.rng.uniform(0, interval)
        k = 0
        while not self._mass_done.is_set():
            time.sleep(max(0.0, start + k * interval - time.monotonic()))
            rid = str(OTHER_FIRST_ID + 100 * index + k % c.other_resources)
            self.p.visma.set_resource(f"/v1/customer/{rid}", _record(rid, k + 1))
            post(session, self.p.state.webhook_url, self._sending(tenant, rid, mass=False))
            k += 1

    def _answered(self) -> tuple[int, int]:
        """(mass notifications with feedback, all of the phase's with feedback)."""
        with self._lock:
            mass = {s.planned.nid for s in self.sendings if s.mass}
            nids = {s.planned.nid for s in self.sendings}
        seen = {f["notificationId"] for f in self.p.visma.feedback}
        return len(mass & seen), len(nids & seen)

    def _wait(self, deadline: float, everything: bool = False) -> bool:
        """Until the mass update has its feedback (``everything``: all the phase's, the queue empty a moment).

        True: the deadline came first.
        """
        last_report = time.monotonic()
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            mass, answered = self._answered()
            if not everything and mass >= self.config.mass_update:
                return False
            if everything and answered >= len(self.sendings) and self.p.depth() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 1.5:
                    return False
            else:
                quiet_since = None
            if time.monotonic() - last_report > REPORT_EVERY:
                last_report = time.monotonic()
                self.say(
                    f"mass update: {mass}/{self.config.mass_update} with feedback, {answered}/"
                    f"{len(self.sendings)} of the phase; queue {self.p.depth()}, DLQ {self.p.dlq_depth()}"
                )
            time.sleep(0.3)
        return True

    def _observe(self, burst_started: float, timed_out: bool, codes: dict[int, int | None]) -> MassObserved:
        from benchmarks.soak.phases import peek_queue  # phases imports this module

        p = self.p
        nids = {s.planned.nid for s in self.sendings}
        budget = requests.get(f"{p.visma.url}/_sandbox/budget", timeout=10).json()
        return MassObserved(
            mass_tenant=self.mass_tenant,
            other_tenants=self.other_tenants,
            sendings=self.sendings,
            burst_started=burst_started,
            timed_out=timed_out,
            budget=budget,
            feedback=[f for f in p.visma.feedback if f["notificationId"] in nids],
            effects=read_effects(p.workdir / "effects"),
            records={r.notification_id: r for r in p.store.scan() if r.notification_id in nids},
            dlq_messages=peek_queue(p.sqs, p.state.dlq_url),
            queue=p.depth(),
            dlq=p.dlq_depth(),
            codes=codes,
        )


def timeline(m: MassObserved) -> list[dict[str, Any]]:
    """Each notification of the phase: when it was sent, handled, answered, and its steps (for diagnosis)."""
    first = m.first_feedback()
    handled: dict[str, float] = {}
    for e in m.effects:
        handled.setdefault(e["id"], e["at"])
    rows = []
    for s in m.sendings:
        nid = s.planned.nid
        record = m.records.get(nid)
        rows.append(
            {
                "nid": nid,
                "tenant": s.planned.tenant,
                "mass": s.mass,
                "resource": s.planned.path,
                "sent": round(s.sent_at - m.burst_started, 3),
                "handled": round(handled[nid] - m.burst_started, 3) if nid in handled else None,
                "feedback": round(first[nid] - m.burst_started, 3) if nid in first else None,
                "steps": [(e.step, e.at) for e in record.history] if record else [],
            }
        )
    return rows
