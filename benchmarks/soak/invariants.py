"""The soak's judging: one function per invariant, each returning its violations (empty: it held).

Extra feedback posts and handler runs are told apart rather than forbidden: a process
killed after Visma's 201 (or after its handler ran) and before it could record that
leaves the next attempt to repeat it, a window no client can close. Every such repeat
must come from a process the soak killed.
"""

from __future__ import annotations

import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from benchmarks.soak.mass_update import MassObserved
from benchmarks.soak.plan import Planned, SoakConfig, other_latency_bound, windows_at_floor
from benchmarks.soak.traffic import Sent, Workload
from benchmarks.soak.workers import Kill
from visma_webhooks.adapters.outcome_store import OutcomeRecord
from visma_webhooks.domain.queueing import FAILURES_ATTRIBUTE, message_attribute

TRANSIENT_STEPS = ("retrying", "throttled")
IN_TIME = "the run finished in time"
ANSWERS = "every request got the answer it should"
HOSTILE = "no forged or malformed notification was processed"
DLQ = "the DLQ holds only what was designed to fail"
FEEDBACK = "every valid notification got exactly one feedback with the right isSuccess"
EFFECTS = "every handler effect happened exactly once"
REPLAY = "replay after the fix drains the DLQ to success"
PROCESSES = "processes stopped cleanly"
KILLS = "the processor was killed mid-batch as planned"
LOST = "nothing was lost"
STALE = "no stale state delivered (lastModifiedDateTime never decreases per resource)"
MASS_IN_TIME = "mass update: finished in time"
MASS_ANSWERS = "mass update: every delivery accepted"
MASS_WINDOWS = "mass update: the budget forced several windows"
MASS_DLQ = "mass update: none dead-lettered"
MASS_GAVE_UP = "mass update: no 'gave up' feedback"
MASS_FEEDBACK = "mass update: feedback posted exactly once per notification"
MASS_EFFECTS = "mass update: each record's handler ran exactly once"
MASS_FINAL = "mass update: every notification reached a final outcome"
MASS_FAIR = "mass update: other tenants' latency bounded during the burst"
FINAL_OUTCOMES = ("succeeded", "superseded")  # a superseded notification got its feedback too


@dataclass
class Snapshot:
    """What Visma, the outcome table and the handler's files hold at one moment."""

    feedback: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    effects: list[dict[str, Any]]
    records: dict[str, OutcomeRecord]  # by notification id
    queue: int = 0
    dlq: int = 0


@dataclass
class Observed:
    """Everything the run saw: the evidence the invariants are judged on."""

    workload: Workload
    sent: list[Sent]
    sending_paused: float  # seconds, summed over the senders
    kills: list[Kill]
    timed_out: bool
    phase1: Snapshot  # once the queue drained, before the fix
    dlq_messages: list[dict[str, Any]]  # the DLQ at that moment
    replay: subprocess.CompletedProcess[str]
    moved: int | None  # DLQ messages the replay reported moved
    final: Snapshot  # after the fix and the replay
    codes: dict[int, int | None]  # worker pid → exit code on SIGTERM
    stack_code: int | None
    mass: MassObserved | None = None  # the mass-update phase, if it ran

    @property
    def killed(self) -> dict[int, float]:
        """pid → time.time() of its kill."""
        return {k.pid: k.wall for k in self.kills}


@dataclass
class Judgement:
    """The violations of each invariant, and the counts the checks made on the way."""

    checks: dict[str, list[str]] = field(default_factory=dict)
    accepted: int = 0
    dlq_nids: Counter[str] = field(default_factory=Counter)  # copies in the DLQ per notification
    reposts_after_kill: int = 0
    superseded: int = 0  # gave-up notices that the replay's success superseded
    reruns_after_kill: int = 0
    committed: int = 0  # notifications whose handler effect happened
    lost: list[str] = field(default_factory=list)
    effects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by notification id

    @property
    def in_dlq(self) -> set[str]:
        return set(self.dlq_nids)


def final_outcome(record: OutcomeRecord | None) -> str | None:
    """The notification's outcome from its history, as ``status`` and ``inspect`` read it.

    A completed step wins over any later step (copies processed at the same moment append
    in the order their writes land), and a process killed between the notification's stage
    and its history write leaves only the outcome the next copy found.
    """
    return record.effective_outcome if record else None


def history_without_outcome(record: OutcomeRecord | None) -> bool:
    """The notification completed, but its history lacks the step (a kill between the two writes)."""
    return record is not None and bool(record.history) and not record.completed


def expected_outcome(p: Planned) -> str:
    """A refusal fails; a deletion (404) succeeds, as does everything else."""
    return "failed" if p.kind == "refused" else "succeeded"


def judge(config: SoakConfig, observed: Observed) -> Judgement:
    """Every invariant, in the order the summary shows them."""
    j = Judgement()
    if observed.timed_out:
        j.checks[IN_TIME] = [f"not drained within {config.timeout:.0f} s"]
    j.checks[ANSWERS] = answers(observed, j)
    j.checks[HOSTILE] = hostile(observed)
    j.checks[DLQ] = dead_letters(config, observed, j)
    j.checks[FEEDBACK] = feedback(observed, j)
    j.checks[EFFECTS] = handler_effects(observed, j)
    j.checks[REPLAY] = replay(observed, j)
    j.checks[PROCESSES] = processes(observed)
    j.checks[KILLS] = kills(config, observed)
    j.checks[LOST] = j.lost[:20]
    j.checks[STALE] = stale_states(observed.mass.effects if observed.mass else observed.final.effects)
    if observed.mass is not None:
        j.checks.update(mass_update(config, observed.mass))
    return j


def answers(observed: Observed, j: Judgement) -> list[str]:
    """Each request got 202 with every item accepted, 401 or 400/413; counts ``accepted``."""
    found = []
    for s in observed.sent:
        if s.status not in s.request.expect:
            found.append(f"{s.request.label}: HTTP {s.status} {str(s.body)[:120]}")
            continue
        if s.request.label == "valid":
            body = s.body if isinstance(s.body, dict) else {}
            got = body.get("accepted")
            j.accepted += got or 0
            if got != len(s.request.nids) or body.get("rejected"):
                found.append(f"valid request of {len(s.request.nids)}: {str(s.body)[:160]}")
    w = observed.workload
    expected = 2 * len(w.valid) + len(w.forged) + len(w.malformed)
    if len(observed.sent) != expected:
        found.append(f"{len(observed.sent)} requests answered of {expected}")
    return found


def hostile(observed: Observed) -> list[str]:
    """No forged or malformed notification is anywhere: records, feedback, effects, DLQ, Visma's log."""
    w, final = observed.workload, observed.final
    ids = {nid for r in w.forged + w.malformed for nid in r.nids}
    found = []
    for where, seen in (
        ("outcome records", set(final.records)),
        ("feedback", {f["notificationId"] for f in final.feedback}),
        ("handler effects", {e["id"] for e in final.effects}),
        ("the DLQ", {message_attribute(m, "notification_id") for m in observed.dlq_messages}),
    ):
        if ids & seen:
            found.append(f"{len(ids & seen)} in {where}")
    fetched = [r["path"] for r in final.requests if "/forged-" in r["path"] or "/malformed-" in r["path"]]
    if fetched:
        found.append(f"Visma was asked for {fetched[:3]}")
    unknown = set(final.records) - set(w.by_nid) - ids
    if unknown:
        found.append(f"{len(unknown)} outcome records of unknown notifications")
    return found


def dead_letters(config: SoakConfig, observed: Observed, j: Judgement) -> list[str]:
    """The DLQ after phase 1: valid copies that used up their receives on transient failures.

    Every outage notification is there with both copies; no refusal (403) without a
    transient failure on its way. Counts ``dlq_nids``.
    """
    by_nid = observed.workload.by_nid
    found = []
    for m in observed.dlq_messages:
        nid = message_attribute(m, "notification_id")
        if nid is None or nid not in by_nid:
            found.append(f"message {m['MessageId']} is no valid notification ({m['Body'][:80]})")
            continue
        j.dlq_nids[nid] += 1
        record = observed.phase1.records.get(nid)
        steps = [e.step for e in record.history] if record else []
        if by_nid[nid].kind == "refused" and not any(s in TRANSIENT_STEPS for s in steps):
            found.append(f"{nid} (403) is in the DLQ without a transient failure")
        # a copy that waited started again at receive 1 but carries its failures: the
        # processor moves it to the DLQ itself once its genuine attempts are used up
        receives = int((m.get("Attributes") or {}).get("ApproximateReceiveCount", "0"))
        attempts = receives + int(message_attribute(m, FAILURES_ATTRIBUTE) or 0)
        if receives and attempts < config.max_receive_count:
            found.append(f"{nid} went to the DLQ after {attempts} attempts")
    for p in observed.workload.planned:
        # each delivered copy ends there; a kill between a wait's fresh copy and the
        # original's deletion leaves one more (absorbed as a duplicate once replayed)
        if p.kind == "outage" and j.dlq_nids[p.nid] < 2:
            found.append(
                f"outage notification {p.nid} has {j.dlq_nids[p.nid]} copies in the DLQ, not 2 or more"
            )
    return found


def _deduplicated(
    posts: list[dict[str, Any]], killed: dict[int, float], found: list[str]
) -> tuple[dict[str, list[bool]], int]:
    """The distinct isSuccess values posted for each notification, and the repeats made by killed processes.

    A repeat by a process that was not killed is a violation.
    """
    same: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)
    for f in posts:
        same[(f["notificationId"], f["isSuccess"])].append(f)
    kept: dict[str, list[bool]] = defaultdict(list)
    reposts = 0
    for (nid, success), repeated in same.items():
        for extra in repeated[:-1]:
            if extra.get("pid") in killed:
                reposts += 1
            else:
                found.append(
                    f"{nid}: feedback isSuccess={success} posted {len(repeated)} times "
                    f"(by pids {[f.get('pid') for f in repeated]}, none killed before the repeat)"
                )
        kept[nid].append(success)
    return kept, reposts


def _before_replay(p: Planned, before: set[bool], in_dlq: bool) -> str | None:
    """Before the fix: the right isSuccess; for one in the DLQ, anything but a refusal's success."""
    if in_dlq:
        if p.kind == "refused" and True in before:
            return f"{p.nid} (403): a success feedback"
        return None
    right = p.kind != "refused"
    if before != {right}:
        return f"{p.nid} ({p.kind}) before the replay: feedback {sorted(before)}, expected [{right}]"
    return None


def _after_replay(p: Planned, after: set[bool], last: bool | None, in_dlq: bool) -> tuple[str | None, bool]:
    """At the end: a refusal only failed, anything else succeeded last; and whether a notice was superseded.

    A failure besides the success is the gave-up notice of a copy that went to the DLQ.
    """
    if p.kind == "refused":
        if after != {False}:
            return f"{p.nid} (403): final feedback {sorted(after)}, expected [False]", False
        return None, False
    if True not in after:
        return f"{p.nid}: no success feedback at the end ({sorted(after)})", False
    if last is not True:
        return f"{p.nid}: the last feedback Visma shows is a failure, after the success", False
    if False not in after:
        return None, False
    if in_dlq:
        return None, True
    return f"{p.nid}: a failure feedback, yet no copy went to the DLQ", False


def _lost(p: Planned, record: OutcomeRecord | None, after: set[bool], last: bool | None) -> bool:
    """Without its final outcome, or without the feedback Visma should show last."""
    right_feedback = after == {False} if p.kind == "refused" else last is True
    return final_outcome(record) != expected_outcome(p) or not right_feedback


def feedback(observed: Observed, j: Judgement) -> list[str]:
    """One feedback per notification with the right isSuccess, the right one last.

    Counts ``reposts_after_kill``, ``superseded`` and ``lost``.
    """
    found: list[str] = []
    killed = observed.killed
    before, _ = _deduplicated(observed.phase1.feedback, killed, found)
    after, j.reposts_after_kill = _deduplicated(observed.final.feedback, killed, found)
    last = {f["notificationId"]: f["isSuccess"] for f in observed.final.feedback}
    in_dlq = j.in_dlq
    for p in observed.workload.planned:
        b, a = set(before.get(p.nid, [])), set(after.get(p.nid, []))
        early = _before_replay(p, b, p.nid in in_dlq)
        late, superseded = _after_replay(p, a, last.get(p.nid), p.nid in in_dlq)
        found += [v for v in (early, late) if v]
        j.superseded += superseded
        if _lost(p, observed.final.records.get(p.nid), a, last.get(p.nid)):
            j.lost.append(p.nid)
    return found


def _runs(p: Planned, runs: list[dict[str, Any]], before_fix: int) -> list[str]:
    """A resource that exists was counted with its document, a deletion (404) as one without.

    A refusal (403) never ran the handler, an outage not before the fix.
    """
    found = []
    if p.kind in ("ok", "deleted") and not runs:
        found.append(f"{p.nid} ({p.kind}): the handler never ran")
    if p.kind == "refused" and runs:
        found.append(f"{p.nid} (403): the handler ran {len(runs)} times")
    if p.kind == "outage" and before_fix:
        found.append(f"{p.nid} (outage): the handler ran before Visma was fixed")
    gone = p.kind == "deleted"
    wrong = [e for e in runs if (e["deleted"], e["fetched"]) != (gone, not gone)]
    if wrong:
        found.append(
            f"{p.nid} ({p.kind}): the handler ran with deleted={wrong[0]['deleted']}, "
            f"a resource {'given' if wrong[0]['fetched'] else 'not given'}"
        )
    return found


def handler_effects(observed: Observed, j: Judgement) -> list[str]:
    """Each handler effect once: every run but the last came from a process killed after it.

    Counts ``reruns_after_kill``, ``committed`` and ``effects``.
    """
    effects: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in observed.final.effects:
        effects[e["id"]].append(e)
    before_fix: Counter[str] = Counter(e["id"] for e in observed.phase1.effects)
    killed = observed.killed
    found = []
    for p in observed.workload.planned:
        runs = sorted(effects.get(p.nid, []), key=lambda e: e["at"])
        found += _runs(p, runs, before_fix[p.nid])
        for e in runs[:-1]:
            if e["pid"] in killed and e["at"] <= killed[e["pid"]]:
                j.reruns_after_kill += 1
            else:
                found.append(
                    f"{p.nid}: the handler ran {len(runs)} times (pids {[r['pid'] for r in runs]}); "
                    f"pid {e['pid']} was not killed after its run"
                )
    j.committed = sum(1 for p in observed.workload.planned if p.kind != "refused" and effects.get(p.nid))
    j.effects = effects
    return found


def replay(observed: Observed, j: Judgement) -> list[str]:
    """``replay`` moved the whole DLQ, both queues drained, and each replayed one ended right."""
    found = []
    done = observed.replay
    if done.returncode != 0:
        found.append(f"visma-webhooks replay exited {done.returncode}: {done.stderr[-300:]}")
    dlq = len(observed.dlq_messages)
    if observed.moved is not None and observed.moved != dlq:
        found.append(f"replay moved {observed.moved} of the {dlq} DLQ messages")
    final = observed.final
    if final.queue or final.dlq:
        found.append(f"after the replay: queue {final.queue}, DLQ {final.dlq}")
    by_nid = observed.workload.by_nid
    for nid in j.in_dlq:
        outcome = final_outcome(final.records.get(nid))
        if outcome != expected_outcome(by_nid[nid]):
            found.append(f"{nid} ({by_nid[nid].kind}) ended {outcome}")
    return found


def processes(observed: Observed) -> list[str]:
    """Every worker and the local stack exited 0 on SIGTERM."""
    found = [
        f"visma-webhooks process (pid {pid}) exited {code} on SIGTERM"
        for pid, code in observed.codes.items()
        if code != 0
    ]
    if observed.stack_code != 0:
        found.append(f"visma-webhooks local exited {observed.stack_code} on SIGTERM")
    return found


def kills(config: SoakConfig, observed: Observed) -> list[str]:
    """Every planned kill happened, each within 0.5 s of its process's last effect (mid-batch)."""
    if len(observed.kills) < config.kills:
        return [f"{len(observed.kills)} kills of {config.kills}"]
    return [
        f"the kill of pid {k.pid} came {k.last_effect_ago:.2f} s after its last effect"
        for k in observed.kills
        if k.last_effect_ago > 0.5
    ]


def stale_states(effects: list[dict[str, Any]]) -> list[str]:
    """Per (tenant, resource), in the order the handler ran: the state received never goes back in time.

    Effects without a ``lastModifiedDateTime`` (a deletion, a synthesised document) say nothing.
    """
    runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in effects:
        if e.get("modified"):
            runs[(e["tenant"], e["resource"])].append(e)
    found = []
    for (tenant, resource), seen in runs.items():
        seen.sort(key=lambda e: e["at"])
        newest = seen[0]
        for e in seen[1:]:
            if e["modified"] < newest["modified"]:
                found.append(
                    f"{e['id']}: tenant {tenant} {resource} handed {e['modified']} after {newest['modified']}"
                )
            elif e["modified"] > newest["modified"]:
                newest = e
    return found


def mass_update(config: SoakConfig, m: MassObserved) -> dict[str, list[str]]:
    """The mass-update phase's invariants, by name."""
    checks: dict[str, list[str]] = {}
    if m.timed_out:
        checks[MASS_IN_TIME] = ["the phase did not finish before its deadline"]
    checks[MASS_ANSWERS] = [
        f"{s.planned.nid}: HTTP {s.status} {str(s.body)[:120]}"
        for s in m.sendings
        if s.status != 202 or not isinstance(s.body, dict) or s.body.get("accepted") != 1
    ]
    windows = m.usage(m.mass_tenant)["resets"] + 1
    checks[MASS_WINDOWS] = (
        []
        if windows >= windows_at_floor(config)
        else [f"Visma saw the mass update in {windows} windows, the floor is {windows_at_floor(config)}"]
    )
    in_dlq = [message_attribute(msg, "notification_id") for msg in m.dlq_messages]
    checks[MASS_DLQ] = [f"DLQ {m.dlq} at the end, queue {m.queue}"] if m.dlq or m.queue else []
    checks[MASS_DLQ] += [f"{nid} in the DLQ" for nid in in_dlq if nid in m.nids]
    checks[MASS_GAVE_UP] = [
        f"{f['notificationId']}: {str(f.get('description'))[:120]}"
        for f in m.feedback
        if str(f.get("description") or "").startswith("gave up")
    ]
    posts = Counter(f["notificationId"] for f in m.feedback)
    failures = {f["notificationId"] for f in m.feedback if f["isSuccess"] is not True}
    checks[MASS_FEEDBACK] = [
        f"{nid}: feedback posted {posts[nid]} times" for nid in sorted(m.nids) if posts[nid] != 1
    ] + [f"{nid}: isSuccess false" for nid in sorted(failures)]
    effects = Counter(e["id"] for e in m.effects if e["id"] in m.nids)
    checks[MASS_EFFECTS] = [
        f"{nid}: the handler ran {effects[nid]} times" for nid in sorted(m.mass_nids) if effects[nid] != 1
    ] + [
        f"{nid}: the handler ran {effects[nid]} times"
        for nid in sorted(m.nids - m.mass_nids)
        if effects[nid] > 1
    ]
    checks[MASS_FINAL] = [
        f"{s.planned.nid} ({'mass update' if s.mass else 'other tenant'}): {outcome}"
        for s in m.sendings
        if (outcome := final_outcome(m.records.get(s.planned.nid)))
        not in (("succeeded",) if s.mass else FINAL_OUTCOMES)
    ]
    checks[MASS_FAIR] = fairness(config, m)
    return checks


def fairness(config: SoakConfig, m: MassObserved) -> list[str]:
    """Every other tenant's notification sent during the burst got its feedback within the bound."""
    latencies = m.latencies_during_burst()
    bound = other_latency_bound(config)
    if not latencies:
        return ["no other tenant's notification was sent during the burst"]
    return [
        f"{nid}: {'no feedback' if seconds is None else f'{seconds:.1f} s'} (bound {bound:.0f} s)"
        for nid, seconds in latencies.items()
        if seconds is None or seconds > bound
    ]
