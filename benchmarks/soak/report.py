"""The soak's figures, its summary on screen, and the files it writes: the results and the violations."""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.soak.invariants import Judgement, Observed, final_outcome, history_without_outcome
from benchmarks.soak.mass_update import MassObserved
from benchmarks.soak.plan import (
    CALLS_PER_NOTIFICATION,
    SoakConfig,
    allowed_per_window,
    other_latency_bound,
    windows_at_floor,
)

# The figures at the top of the summary, in this order; the others follow in a section of their own.
HEADLINE = (
    "notifications",
    "requests sent",
    "accepted",
    "processed",
    "duplicates absorbed",
    "retries",
    "DLQ",
    "replayed",
    "lost",
)


@dataclass
class SoakResult:
    config: dict[str, Any]
    figures: dict[str, Any]
    checks: dict[str, list[str]]  # check → violations (empty: held)
    kills: list[dict[str, Any]]
    phases: dict[str, float]
    workdir: str
    mass_update: dict[str, Any] = field(default_factory=dict)  # the mass-update phase's figures

    @property
    def violations(self) -> list[str]:
        return [f"{name}: {v}" for name, found in self.checks.items() for v in found]

    @property
    def ok(self) -> bool:
        return not self.violations and self.figures.get("lost") == 0


def result(
    config: SoakConfig, observed: Observed, j: Judgement, phases: dict[str, float], workdir: Path
) -> SoakResult:
    return SoakResult(
        config={k: v for k, v in asdict(config).items() if k not in ("workdir", "keep", "results")},
        figures=figures(config, observed, j),
        checks=j.checks,
        kills=[{k: v for k, v in asdict(kill).items() if k != "wall"} for kill in observed.kills],
        phases={k: round(v, 1) for k, v in phases.items()},
        workdir=str(workdir),
        mass_update=mass_figures(config, observed.mass) if observed.mass is not None else {},
    )


def _share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def mass_figures(config: SoakConfig, m: MassObserved) -> dict[str, Any]:
    """The mass-update phase from one run: what the closing note of the budget work quotes."""
    mass = m.usage(m.mass_tenant)
    others = [m.usage(t) for t in m.other_tenants]
    latencies = m.latencies_during_burst()
    known = sorted(v for v in latencies.values() if v is not None)
    ended = m.burst_ended
    steps = Counter(e.step for r in m.records.values() for e in r.history)
    mass_nids = m.mass_nids
    other_waits = sum(
        e.step in ("throttled", "waiting")
        for nid, r in m.records.items()
        if nid not in mass_nids
        for e in r.history
    )
    outcomes = Counter(final_outcome(r) for r in m.records.values())
    calls = CALLS_PER_NOTIFICATION * config.mass_update
    return {
        "notifications": config.mass_update,
        "budget: calls per window": config.calls_per_window,
        "budget: window seconds": config.window_seconds,
        "allowed per window (less the reserve)": allowed_per_window(config),
        "calls needed": calls,
        "windows needed at the floor": windows_at_floor(config),
        "wall time (s)": round(ended - m.burst_started, 1) if ended is not None else None,
        "floor's wall time (s)": round((windows_at_floor(config) - 1) * config.window_seconds, 1),
        "windows used (Visma's resets + 1)": mass["resets"] + 1,
        "Visma calls": mass["calls"],
        "429s": mass["refused"],
        "429s as a share of calls": _share(mass["refused"], mass["calls"]),
        "other tenants": len(m.other_tenants),
        "other tenants' notifications": sum(not s.mass for s in m.sendings),
        "of them during the burst": len(latencies),
        "other tenants' calls": sum(o["calls"] for o in others),
        "other tenants' 429s": sum(o["refused"] for o in others),
        "other tenants' worst latency during the burst (s)": round(known[-1], 2) if known else None,
        "other tenants' median latency during the burst (s)": round(known[len(known) // 2], 2)
        if known
        else None,
        "latency bound (s)": other_latency_bound(config),
        "waits re-enqueued (throttled)": steps["throttled"],
        "waits re-enqueued (waiting)": steps["waiting"],
        "of them the other tenants'": other_waits,
        "superseded": outcomes["superseded"],
        "feedback posts": len(m.feedback),
        "gave up": sum(str(f.get("description") or "").startswith("gave up") for f in m.feedback),
        "DLQ": m.dlq,
    }


def figures(config: SoakConfig, observed: Observed, j: Judgement) -> dict[str, Any]:
    return {
        **_sending(config, observed, j),
        **_processing(observed, j),
        **_visma(observed),
        **_repeats(observed, j),
        **_dead_letters(observed, j),
    }


def _sending(config: SoakConfig, observed: Observed, j: Judgement) -> dict[str, Any]:
    w, sent = observed.workload, observed.sent
    return {
        "notifications": len(w.planned),
        "resources refused (403)": sum(p.kind == "refused" for p in w.planned),
        "resources deleted (404)": sum(p.kind == "deleted" for p in w.planned),
        "resources in an outage until the fix": sum(p.kind == "outage" for p in w.planned),
        "dispatcher deliveries": sum(p.fmt == "dispatcher" for p in w.planned),
        "valid requests (each sent twice)": len(w.valid),
        "requests sent": len(sent),
        "forged requests (401)": sum(
            1 for s in sent if s.request.label.startswith("forged") and s.status == 401
        ),
        "malformed requests (400/413)": sum(
            1 for s in sent if s.request.label.startswith("malformed") and s.status in s.request.expect
        ),
        "ingest retries (non-2xx answers)": sum(s.attempts - 1 for s in sent),
        "sending paused for the queue (s)": round(observed.sending_paused / max(1, config.senders), 1),
        "accepted": j.accepted,
    }


def _processing(observed: Observed, j: Judgement) -> dict[str, Any]:
    planned, records = observed.workload.planned, observed.final.records
    nids = {p.nid for p in planned}
    steps = Counter(e.step for nid, r in records.items() if nid in nids for e in r.history)
    outcomes = Counter(final_outcome(records[p.nid]) if p.nid in records else "none" for p in planned)
    return {
        "processed": outcomes["succeeded"] + outcomes["failed"],
        "succeeded": outcomes["succeeded"],
        "failed (403, failure feedback)": outcomes["failed"],
        "duplicates absorbed": j.accepted - len(planned),
        "duplicates seen by the dedup table": steps["duplicate"],
        "retries": steps["retrying"] + steps["throttled"],
        "retries after a 429 (throttled)": steps["throttled"],
    }


def _visma(observed: Observed) -> dict[str, Any]:
    before_fix = observed.phase1.requests
    faults = Counter(r.get("fault") for r in before_fix if r.get("fault"))
    return {
        "Visma calls": len(observed.final.requests),
        "Visma faults injected": dict(sorted(faults.items(), key=lambda kv: str(kv[0]))),
        "Visma fault rate before the fix (outage aside)": round(
            (faults["5xx"] + faults["429"] + faults["timeout"]) / max(1, len(before_fix)), 3
        ),
        "kills (kill -9 mid-batch)": len(observed.kills),
    }


def _repeats(observed: Observed, j: Judgement) -> dict[str, Any]:
    records, posts = observed.final.records, observed.final.feedback
    gave_up = Counter(
        re.sub(r"^gave up after \d+ attempts: ", "", str(f.get("description"))).split(":")[0]
        for f in posts
        if str(f.get("description") or "").startswith("gave up")
    )
    return {
        "handler effects committed": j.committed,
        "histories completed by a later copy (kill between stage and history)": sum(
            history_without_outcome(records.get(p.nid)) and final_outcome(records.get(p.nid)) is not None
            for p in observed.workload.planned
        ),
        "handler re-runs after kill -9": j.reruns_after_kill,
        "feedback posts": len(posts),
        "feedback re-posted after kill -9": j.reposts_after_kill,
        "gave-up notices superseded by the replay's success": j.superseded,
        "gave-up notices by last error": dict(gave_up.most_common()),
    }


def _dead_letters(observed: Observed, j: Judgement) -> dict[str, Any]:
    outage = {p.nid for p in observed.workload.planned if p.kind == "outage"}
    dlq = len(observed.dlq_messages)
    return {
        "DLQ": dlq,
        "DLQ notifications": len(j.in_dlq),
        "DLQ notifications (outage)": len(j.in_dlq & outage),
        "DLQ notifications (fault rate and kills)": len(j.in_dlq - outage),
        "replayed": observed.moved if observed.moved is not None else dlq,
        "lost": len(j.lost),
    }


def violation_details(observed: Observed, j: Judgement) -> dict[str, Any]:
    """Everything known about each notification that a violation names, or that was lost."""
    named = {v.split(" ", 1)[0].rstrip(":") for found in j.checks.values() for v in found}
    by_nid, final = observed.workload.by_nid, observed.final
    return {
        nid: {
            "planned": asdict(by_nid[nid]),
            "record": record.item if (record := final.records.get(nid)) else None,
            "feedback": [f for f in final.feedback if f["notificationId"] == nid],
            "effects": j.effects.get(nid, []),
            "in_dlq": j.dlq_nids.get(nid, 0),
        }
        for nid in sorted(set(j.lost) | named)
        if nid in by_nid
    }


def _figures_table(f: dict[str, Any]) -> Table:
    table = Table(
        title="Soak: the pipeline under faults, duplicates, forgeries and kill -9", title_justify="left"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in HEADLINE:
        style = "bold red" if key == "lost" and f[key] else "bold"
        table.add_row(f"[{style}]{key}[/]", f"[{style}]{f[key]:,}[/]")
    table.add_section()
    for key, value in f.items():
        if key not in HEADLINE:
            text = (
                ", ".join(f"{k} {v:,}" for k, v in value.items()) if isinstance(value, dict) else f"{value:,}"
            )
            table.add_row(key, text)
    return table


def _checks_table(checks: dict[str, list[str]]) -> Table:
    table = Table(title="Invariants", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    for name, violations in checks.items():
        if violations:
            more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
            table.add_row(name, f"[red]✗ {len(violations)}[/] {'; '.join(violations[:3])}{more}")
        else:
            table.add_row(name, "[green]✓[/]")
    return table


def _mass_table(f: dict[str, Any]) -> Table:
    table = Table(
        title="Mass update: one tenant's burst against a budget of several windows", title_justify="left"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in f.items():
        table.add_row(key, "none" if value is None else f"{value:,}")
    return table


def summary(result: SoakResult, console: Console) -> None:
    console.print(_figures_table(result.figures))
    if result.mass_update:
        console.print(_mass_table(result.mass_update))
    console.print(_checks_table(result.checks))
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
        **{k: getattr(result, k) for k in ("config", "figures", "mass_update", "checks", "kills", "phases")},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
