"""The soak's processes: the local stack, the ``visma-webhooks process`` workers, and the kills among them.

The counting handler (:mod:`benchmarks.soak_handlers`) writes one line per run to a file of
its process; following those files tells which worker is mid-batch, and when to kill it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.localstack import cli, stop_process
from benchmarks.soak.plan import SoakConfig
from benchmarks.soak.traffic import SECRET
from benchmarks.soak.visma import CLIENT_ID, CLIENT_SECRET, FaultyVisma
from visma_webhooks_local.stack.state import StackState

# Shared with benchmarks.soak_handlers (see PID_TAG in benchmarks.soak.visma).
EFFECTS_ENV = "SOAK_EFFECTS_DIR"
STACK_START_SECONDS = 90


def _is_effects_file(name: str) -> bool:
    return name.startswith("effects-") and name.endswith(".jsonl")


def read_effects(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every effect line the counting handler wrote under ``directory``, from any process."""
    effects: list[dict[str, Any]] = []
    for name in sorted(os.listdir(directory)):
        if _is_effects_file(name):
            with open(os.path.join(directory, name), encoding="utf-8") as file:
                effects.extend(json.loads(line) for line in file if line.endswith("\n"))
    return effects


def start_stack(
    config: SoakConfig, workdir: Path, state_file: Path, visma: FaultyVisma, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``visma-webhooks local --no-processor`` against the soak's Visma, once its state file names it."""
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
        "--visma-salesorders-url",
        visma.salesorders_url,
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
        str(config.max_receive_count),
        "--visibility-timeout",
        str(config.visibility_timeout),
        "--processor-timeout",
        str(config.processor_timeout),
        "--retry-base-seconds",
        str(config.retry_base_seconds),
    ]
    with open(workdir / "local.out", "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    deadline = time.monotonic() + STACK_START_SECONDS
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
    stop_process(process)
    raise RuntimeError(f"visma-webhooks local did not start within {STACK_START_SECONDS} s")


class Workers:
    """The ``visma-webhooks process`` subprocesses: start, kill -9, restart, stop."""

    def __init__(self, workdir: Path, state_file: Path, env: dict[str, str], pollers: int):
        self.workdir = workdir
        self.state_file = state_file
        self.env = env
        self.pollers = pollers
        self.running: dict[int, subprocess.Popen[bytes]] = {}  # slot → process
        self.restarts: dict[int, float] = {}  # slot → when to start it again
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

    def stop_all(self) -> dict[int, int | None]:
        """SIGTERM to every running process: pid → exit code."""
        codes = {}
        for slot in list(self.running):
            process = self.running.pop(slot)
            codes[process.pid] = stop_process(process, 40)
        return codes

    def restart_crashed(self, now: float) -> list[int]:
        """Exit codes of the processes that ended on their own, each due to start again now."""
        crashed = [(s, p.returncode) for s, p in self.running.items() if p.poll() is not None]
        for slot, _ in crashed:
            self.running.pop(slot)
            self.restarts[slot] = now
        return [code for _, code in crashed]

    def start_due(self, now: float) -> None:
        for slot, at in list(self.restarts.items()):
            if now >= at:
                del self.restarts[slot]
                self.start(slot)


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
            if not _is_effects_file(entry.name):
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


@dataclass
class Kill:
    pid: int
    at: float  # seconds since the start of the run
    effects_by_pid: int
    last_effect_ago: float
    wall: float = 0.0  # time.time() of the kill


def kill_thresholds(config: SoakConfig, expected_effects: int, rng: random.Random) -> list[float]:
    """One kill in each of ``kills`` equal slices of the expected effects, at a random point of it."""
    return [
        (0.05 + 0.8 * (i + rng.uniform(0.1, 0.9)) / max(1, config.kills)) * expected_effects
        for i in range(config.kills)
    ]


class Killer:
    """Kills a worker with SIGKILL in the middle of a batch each time the effects pass a threshold."""

    BUSY_SECONDS = 0.3  # a worker whose effects grew this recently is mid-batch

    def __init__(
        self,
        workers: Workers,
        watcher: EffectWatcher,
        thresholds: list[float],
        rng: random.Random,
        started: float,
    ):
        self.workers = workers
        self.watcher = watcher
        self.thresholds = thresholds
        self.rng = rng
        self.started = started
        self.kills: list[Kill] = []

    @property
    def done(self) -> bool:
        return len(self.kills) >= len(self.thresholds)

    def due(self) -> bool:
        return not self.done and self.watcher.total >= self.thresholds[len(self.kills)]

    def kill_one(self) -> Kill | None:
        """Kill a busy worker and schedule its restart; None when no worker is mid-batch now."""
        now = time.monotonic()
        running = self.workers.running
        busy = sorted(
            slot
            for slot, p in running.items()
            if now - self.watcher.grew.get(p.pid, -1e9) < self.BUSY_SECONDS
        )
        if not busy:
            return None
        slot = self._moment(busy)
        if slot is None:
            return None
        self.watcher.poll()
        pid = running[slot].pid
        ago = time.monotonic() - self.watcher.grew.get(pid, 0)
        wall = time.time()
        self.workers.kill(slot)
        kill = Kill(
            pid,
            round(time.monotonic() - self.started, 2),
            self.watcher.lines.get(pid, 0),
            round(ago, 3),
            wall,
        )
        self.kills.append(kill)
        self.workers.restarts[slot] = time.monotonic() + self.rng.uniform(0.3, 1.5)
        return kill

    def _moment(self, busy: list[int]) -> int | None:
        """Wait for the moment to kill, and return the slot to kill (None: the batches went quiet).

        Half the kills land as soon as a handler has counted an effect (within a few ms): the
        window between a handler's run and the record of its success. The others anywhere
        within 150 ms of the batch going on.
        """
        slot = self.rng.choice(busy)
        if self.rng.random() >= 0.5:
            time.sleep(self.rng.uniform(0, 0.15))
            return slot
        lines = self.watcher.lines
        seen = {s: lines.get(self.workers.running[s].pid, 0) for s in busy}
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            self.watcher.poll()
            fresh = [s for s in busy if lines.get(self.workers.running[s].pid, 0) > seen[s]]
            if fresh:
                return fresh[0]
            time.sleep(0.002)
        return None  # waiting on Visma: try again later
