"""``make bench``: cold start, ingest, processor, local-stack throughput and package sizes.

Prints a table (rich) and writes ``results.json`` and ``results.md`` under the git-ignored
``build/bench/``; ``--record`` also updates the committed ``benchmarks/results.json`` and
``benchmarks/results.md``, so that only a deliberate run changes them. Every ratio is
measured side by side in the same run. A part that cannot run (no SAM build, no local
stack) is reported as unavailable; the others still run.

    python -m benchmarks.run [--quick] [--parts coldstart,ingest,processor,throughput,sizes]
                             [--output FILE.json] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import coldstart
from benchmarks.common import ROOT, moto_server, verdict

HERE = Path(__file__).resolve().parent
OUTPUT = ROOT / "build" / "bench" / "results.json"
RECORDED = HERE / "results.json"
PARTS = ("coldstart", "ingest", "processor", "throughput", "sizes")
console = Console(highlight=False)


def _part(name: str, quick: bool) -> dict[str, Any]:
    """Run one part; its module is imported here, so that one that cannot load fails alone."""
    if name == "coldstart":
        return coldstart.run(samples=5 if quick else coldstart.SAMPLES)
    if name == "ingest":
        from benchmarks import ingest_bench

        with moto_server() as endpoint:
            return ingest_bench.run(endpoint, rounds=8 if quick else ingest_bench.ROUNDS)
    if name == "processor":
        from benchmarks import processor_bench

        with moto_server() as endpoint:
            return processor_bench.run(endpoint, rounds=2 if quick else processor_bench.ROUNDS)
    if name == "throughput":
        from benchmarks import throughput

        return throughput.run(notifications=200 if quick else throughput.NOTIFICATIONS)
    if name == "sizes":
        from benchmarks import sizes

        return sizes.run()
    raise ValueError(name)


def targets(parts: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue with its measured value and met/missed."""
    rows: list[dict[str, Any]] = []
    cold = parts.get("coldstart", {})
    for function, entry in cold.get("functions", {}).items():
        rows.append(
            {
                "part": "cold start",
                "target": f"{function} import <= {coldstart.TARGET_RATIO}x baseline",
                "value": f"{entry['ratio']:.2f}x ({entry['median_ms']:.0f} vs {entry['baseline_median_ms']:.0f} ms)",
                "met": entry["met"],
            }
        )
    for part, label in (("ingest", "ingest"), ("processor", "processor")):
        for target, entry in parts.get(part, {}).get("targets", {}).items():
            value = entry.get("value", "")
            rows.append(
                {
                    "part": label,
                    "target": target,
                    "value": f"{value:.2f}x" if isinstance(value, float) else str(value),
                    "met": entry["met"],
                }
            )
    return rows


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def _sqs_calls(observed: list[dict[str, int]]) -> str:
    if len(observed) == 1 and set(observed[0]) == {"SendMessageBatch"}:
        return f"{observed[0]['SendMessageBatch']} SendMessageBatch"
    return f"SQS calls varied: {observed}"


def _requests(requests: dict[str, float]) -> str:
    """DynamoDB requests by operation: ``2 TransactWriteItems, 1 UpdateItem, 0.2 PutItem``."""
    by_count = sorted(((n, op) for op, n in requests.items() if op != "total"), key=lambda x: (-x[0], x[1]))
    return ", ".join(f"{n:g} {op}" for n, op in by_count)


def _visma_calls(calls: dict[str, int]) -> str:
    names = {"GET customer": "GET", "POST webhooknotificationfeedback": "feedback POST", "token": "token"}
    return ", ".join(f"{v} {names.get(k, k)}" for k, v in sorted(calls.items()))


Row = tuple[str, str, str]  # (part, measurement, value)


def _coldstart_rows(cold: dict[str, Any]) -> list[Row]:
    return [
        ("cold start", f"import {name} (median of {cold['samples']})", _ms(value))
        for name, value in cold["median_ms"].items()
    ]


def _ingest_rows(ingest: dict[str, Any]) -> list[Row]:
    rows = [("ingest", "one bare SendMessageBatch of 10", _ms(ingest["bare_send_message_batch_ms"]))]
    for n, value in ingest["handler_ms"].items():
        calls = _sqs_calls(ingest["sqs_calls"][n]["observed"])
        rows.append(
            ("ingest", f"handler, {n} notification{'s' if n != '1' else ''}", f"{_ms(value)} · {calls}")
        )
    return rows


PROCESSOR_LABELS = {
    "one": "one record alone",
    "batch": "batch of 10 (10 resources)",
    "sequential": "the same 10, one record per invocation",
    "shared": "batch of 10 naming 3 resources",
}


def _processor_rows(proc: dict[str, Any]) -> list[Row]:
    calls = proc["calls_last_round"]
    rows = [
        ("processor", PROCESSOR_LABELS[name], f"{_ms(value)} · {_visma_calls(calls[name]['visma'])}")
        for name, value in proc["handler_ms"].items()
    ]
    dynamodb = proc["dynamodb_requests_per_notification"]
    rows.append(
        (
            "processor",
            "DynamoDB requests per notification, batch of 10 (budget included)",
            f"{dynamodb['batch']['total']:g} · {_requests(dynamodb['batch'])}",
        )
    )
    rows += [
        (
            "processor",
            f"DynamoDB requests of one record alone ({alone['invocations']} of 10 invocations)",
            f"{alone['total']} · {_requests(alone['requests'])}",
        )
        for alone in dynamodb["alone"]
    ]
    floor = proc["aws_emulator"]
    rows.append(
        (
            "processor",
            f"moto alone: the batch's {sum(floor['dynamodb_calls'].values())} DynamoDB requests "
            "replayed, 1 record's / all 10 from 10 threads",
            f"{_ms(floor['one_record_replayed_ms'])} / {_ms(floor['batch_replayed_from_threads_ms'])} "
            f"({proc['emulator_share_of_batch']:.0%} of the batch's time)",
        )
    )
    rows.append(
        (
            "processor",
            "processor CPU, one record / batch of 10",
            f"{_ms(calls['one']['cpu_ms'])} / {_ms(calls['batch']['cpu_ms'])}",
        )
    )
    return rows


def _throughput_rows(tp: dict[str, Any]) -> list[Row]:
    return [
        (
            "throughput",
            f"local stack, {tp['notifications']:,} notifications ({tp['pollers']} pollers)",
            f"{tp['end_to_end_per_second']}/s end to end ({tp['end_to_end_seconds']} s), "
            f"ingest {tp['ingest_per_second']}/s",
        )
    ]


def _size_rows(size: dict[str, Any]) -> list[Row]:
    stale = " (build older than the sources)" if size.get("stale") else ""
    return [
        (
            "package size",
            name + stale,
            f"{entry['zip_bytes'] / 1024:,.1f} KiB zipped, {entry['unpacked_bytes'] / 1024:,.1f} KiB unpacked",
        )
        for name, entry in size["artefacts"].items()
    ]


# Each part's rows, and the key its result has when the part ran (a failed part has only its error).
_ROWS: tuple[tuple[str, str, Callable[[dict[str, Any]], list[Row]]], ...] = (
    ("coldstart", "median_ms", _coldstart_rows),
    ("ingest", "handler_ms", _ingest_rows),
    ("processor", "handler_ms", _processor_rows),
    ("throughput", "end_to_end_per_second", _throughput_rows),
    ("sizes", "artefacts", _size_rows),
)


def measurements(parts: dict[str, Any]) -> list[Row]:
    """(part, measurement, value) rows for the table."""
    rows: list[Row] = []
    for name, key, part_rows in _ROWS:
        part = parts.get(name)
        if part and key in part:
            rows += part_rows(part)
    for name, part in parts.items():
        if part.get("available") is False:
            rows.append((name, "unavailable", str(part.get("reason") or part.get("error"))[:200]))
    return rows


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Measured {results['generated_at']} on {results['machine']['cpus']} CPU(s), "
        f"Python {results['machine']['python']} ({results['machine']['platform']}).",
        "",
        "| part | measurement | value |",
        "| --- | --- | --- |",
        *(f"| {p} | {m} | {v} |" for p, m, v in measurements(results["parts"])),
        "",
        "| part | target | measured | |",
        "| --- | --- | --- | --- |",
        *(
            f"| {t['part']} | {t['target']} | {t['value']} | {verdict(t['met'])} |"
            for t in results["targets"]
        ),
        "",
    ]
    return "\n".join(lines)


def show(results: dict[str, Any]) -> None:
    table = Table(title="Benchmarks", title_justify="left")
    for column in ("part", "measurement", "value"):
        table.add_column(column)
    for row in measurements(results["parts"]):
        table.add_row(*row)
    console.print(table)
    goals = Table(title="Targets", title_justify="left")
    for column in ("part", "target", "measured", ""):
        goals.add_column(column)
    for t in results["targets"]:
        goals.add_row(t["part"], t["target"], t["value"], "[green]met[/]" if t["met"] else "[red]missed[/]")
    console.print(goals)
    for function, entry in results["parts"].get("coldstart", {}).get("functions", {}).items():
        profile = entry["import_profile"]
        extra = ", ".join(f"{k} {v}" for k, v in list(profile["extra_imports_ms"].items())[:5])
        console.print(
            f"[dim]{function}: imports beyond the baseline {profile['extra_imports_total_ms']} ms ({extra}); "
            f"module-level code {profile['module_level_code_ms']}[/]"
        )


def write(results: dict[str, Any], output: Path) -> None:
    """The results as JSON to ``output``, and their tables as Markdown beside it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    output.with_suffix(".md").write_text(markdown(results), encoding="utf-8")


def run_parts(chosen: list[str], quick: bool) -> tuple[dict[str, Any], bool]:
    """Each chosen part's results, and whether any failed (a failed part's entry says why)."""
    parts: dict[str, Any] = {}
    failed = False
    for name in chosen:
        console.print(f"[bold]{name}[/] …")
        began = time.monotonic()
        try:
            parts[name] = _part(name, quick)
        except Exception as exc:  # one part failing must not lose the others
            failed = True
            parts[name] = {"available": False, "error": f"{type(exc).__name__}: {exc}"}
            console.print(f"[red]{name} failed[/]: {exc}")
            traceback.print_exc(file=sys.stderr)
        parts[name]["seconds"] = round(time.monotonic() - began, 1)
    return parts, failed


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    options.add_argument(
        "--quick", action="store_true", help="fewer samples (a smoke run, not for the README)"
    )
    options.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    options.add_argument(
        "--output",
        type=Path,
        help="the JSON file, the Markdown beside it (default: build/bench/results.json)",
    )
    options.add_argument(
        "--record",
        action="store_true",
        help="also update the committed benchmarks/results.json and results.md",
    )
    return options


def main(argv: list[str] | None = None) -> int:
    options = parser()
    args = options.parse_args(argv)
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(chosen) - set(PARTS)
    if unknown:
        options.error(f"unknown parts: {sorted(unknown)}")
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    started, load = time.monotonic(), os.getloadavg()
    parts, failed = run_parts(chosen, args.quick)
    results = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load],
        },
        "seconds": round(time.monotonic() - started, 1),
        "parts": parts,
    }
    results["targets"] = targets(parts)
    show(results)
    for output in [args.output or OUTPUT, *([RECORDED] if args.record else [])]:
        write(results, output)
        console.print(f"[dim]{output} and its .md written in {results['seconds']} s[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
