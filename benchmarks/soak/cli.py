"""``python -m benchmarks.soak``: run the soak, print its summary, write its figures; exit 1 on any violation."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

import benchmarks.soak
from benchmarks.soak.phases import Soak
from benchmarks.soak.plan import RECORDED_RESULTS, RESULTS, SoakConfig, check_mass_plan
from benchmarks.soak.report import SoakResult, summary, write_results


def run(config: SoakConfig, console: Console | None = None, record: bool = False) -> SoakResult:
    """Run the soak and show its summary.

    The figures go to ``config.results``, and with ``record`` to the committed file too.
    """
    console = console or Console(highlight=False)
    result = Soak(config, console).run()
    summary(result, console)
    paths = [config.results] if config.results is not None else []
    for path in [*paths, *([RECORDED_RESULTS] if record else [])]:
        write_results(result, path)
        console.print(f"[dim]figures written to {path}[/]")
    return result


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=(benchmarks.soak.__doc__ or "").split("\n")[0]
    )
    options.add_argument("--notifications", type=int, default=SoakConfig.notifications)
    options.add_argument(
        "--kills", type=int, default=SoakConfig.kills, help="kill -9 of a processor mid-batch"
    )
    options.add_argument("--seed", type=int, default=SoakConfig.seed)
    options.add_argument("--max-receive-count", type=int, default=SoakConfig.max_receive_count)
    options.add_argument("--processes", type=int, default=SoakConfig.processes)
    options.add_argument("--pollers", type=int, default=SoakConfig.pollers, help="per processor process")
    options.add_argument(
        "--mass-update",
        type=int,
        default=SoakConfig.mass_update,
        help="notifications of the mass-update phase, for one tenant at once (0: no such phase)",
    )
    options.add_argument(
        "--calls-per-window",
        type=int,
        default=SoakConfig.calls_per_window,
        help="Visma's budget per (tenant, client) in the mass-update phase",
    )
    options.add_argument(
        "--window-seconds", type=float, default=SoakConfig.window_seconds, help="Visma's budget window"
    )
    options.add_argument(
        "--other-rate",
        type=float,
        default=SoakConfig.other_rate,
        help="notifications a second for each other tenant during the mass update",
    )
    options.add_argument(
        "--timeout", type=float, default=SoakConfig.timeout, help="seconds for the whole run"
    )
    options.add_argument("--workdir", type=Path, default=None, help="keep logs and effects here")
    options.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="the figures' file (default: build/soak/soak-results.json)",
    )
    options.add_argument(
        "--record", action="store_true", help="also update the committed benchmarks/soak-results.json"
    )
    return options


def main(argv: list[str] | None = None) -> int:
    options = parser()
    args = options.parse_args(argv)
    config = SoakConfig(
        notifications=args.notifications,
        kills=args.kills,
        seed=args.seed,
        max_receive_count=args.max_receive_count,
        processes=args.processes,
        pollers=args.pollers,
        mass_update=args.mass_update,
        calls_per_window=args.calls_per_window,
        window_seconds=args.window_seconds,
        other_rate=args.other_rate,
        timeout=args.timeout,
        workdir=args.workdir,
        keep=args.workdir is not None,
        results=args.results,
    )
    problems = check_mass_plan(config)
    if problems:
        options.error("; ".join(problems))
    result = run(config, record=args.record)
    return 0 if result.ok else 1
