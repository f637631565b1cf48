"""``visma-webhooks local`` and ``visma-webhooks process`` as subprocesses, for the throughput run and the soak."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks.common import ROOT
from visma_webhooks_local.stack.state import StackError, StackState


def cli() -> list[str]:
    """The ``visma-webhooks`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("visma-webhooks")
    if script.exists():
        return [str(script)]
    found = shutil.which("visma-webhooks")
    if found:
        return [found]
    return [sys.executable, "-c", "from visma_webhooks_local.cli import main; main()"]


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without AWS settings (the stack uses fake ones), with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


def stop_process(child: subprocess.Popen[Any], grace: float = 30.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait(timeout=10)
    return child.returncode


class LocalStackProcess:
    """A running ``visma-webhooks local`` (no embedded sandbox: Visma is the caller's server)."""

    def __init__(
        self,
        workdir: Path,
        *,
        visma_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        webhook_secrets: Sequence[str],
        handler_modules: str,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        start_timeout: float = 90.0,
    ):
        self.workdir = workdir
        self.state_file = workdir / "state.json"
        self.env = child_environment(env)
        self._output: IO[str] = open(workdir / "local.out", "w", encoding="utf-8")  # noqa: SIM115
        command = [
            *cli(),
            "local",
            "--port",
            "0",
            "--quiet",
            "--state-file",
            str(self.state_file),
            "--function-logs",
            str(workdir / "functions.log"),
            "--visma-base-url",
            visma_url,
            "--token-url",
            token_url,
            "--client-id",
            client_id,
            "--client-secret",
            client_secret,
            "--handler-modules",
            handler_modules,
            *[arg for secret in webhook_secrets for arg in ("--webhook-secret", secret)],
            *options,
        ]
        self.child = subprocess.Popen(
            command, cwd=self.workdir, env=self.env, stdout=self._output, stderr=subprocess.STDOUT, text=True
        )
        self.state = self._wait_for_state(start_timeout)
        self.processors: list[subprocess.Popen[Any]] = []

    def _wait_for_state(self, timeout: float) -> StackState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                raise RuntimeError(
                    f"visma-webhooks local exited ({self.child.returncode}): {self.output()[-2000:]}"
                )
            with contextlib.suppress(StackError):
                state = StackState.load(self.state_file)
                if state.pid == self.child.pid:
                    return state
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"visma-webhooks local did not start within {timeout:.0f} s: {self.output()[-2000:]}"
        )

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "local.out").read_text(encoding="utf-8", errors="replace")
        return ""

    @property
    def webhook_url(self) -> str:
        return self.state.webhook_url

    def run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Another ``visma-webhooks`` command against this stack (``replay``, ``status``...)."""
        return subprocess.run(
            [*cli(), *args, "--state-file", str(self.state_file)],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        for child in self.processors:
            stop_process(child, grace=15)
        stop_process(self.child)
        self._output.close()

    def __enter__(self) -> LocalStackProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
