"""Cold start: import time of each function's handler module in a fresh interpreter.

Each sample is a new interpreter with a Lambda-like environment (no variables of this
shell, the function's settings, the function directory and the layer on ``sys.path``)
that times ``import app`` and nothing else. Bytecode of the project's modules and of the
baselines is compiled with ``compileall`` before measuring, as ``sam build`` ships it
compiled in the runtime's site-packages. Functions and baselines are measured in
rotation, so that load on the machine hits each alike.
"""

from __future__ import annotations

import compileall
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

SAMPLES = 15
TARGET_RATIO = 1.1
LAYER = ROOT / "layers"
BASELINES = ROOT / "benchmarks" / "baselines"

_LAMBDA_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "example",
    "AWS_SESSION_TOKEN": "example",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "_HANDLER": "app.handler",
    "POWERTOOLS_SERVICE_NAME": "visma-webhooks",
    "POWERTOOLS_METRICS_NAMESPACE": "VismaWebhooks",
    "PYTHONDONTWRITEBYTECODE": "1",  # the compiled bytecode is read, never rewritten
}
_QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/visma-webhooks-NotificationsQueue"
_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
INGEST_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "visma-webhooks-IngestFunction",
    "QUEUE_URL": _QUEUE,
    "DLQ_URL": _QUEUE + "DLQ",
    "WEBHOOK_SECRET_ARN": _ARN + "visma-webhooks/webhook-secret",
    "ALLOWED_RESOURCE_HOSTS": "integration.visma.net,api.finance.visma.net",
}
PROCESSOR_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "visma-webhooks-ProcessorFunction",
    "QUEUE_URL": _QUEUE,
    "IDEMPOTENCY_TABLE": "visma-webhooks-IdempotencyTable",
    "IDEMPOTENCY_TTL_HOURS": "168",
    "VISMA_API_BASE_URL": "https://api.finance.visma.net",
    "VISMA_TOKEN_URL": "https://connect.visma.com/connect/token",
    "VISMA_CLIENT_SECRET_ARN": _ARN + "visma-webhooks/visma-client",
    "HANDLER_MODULES": "visma_webhooks.notification_handlers.log",
    "MAX_RECEIVE_COUNT": "5",
    "RETRY_BASE_SECONDS": "10",
    "ALLOWED_RESOURCE_HOSTS": "integration.visma.net,api.finance.visma.net",
}

# Only sys and time are loaded before the clock starts; the module's own imports are timed.
_CHILD = (
    "import sys, time\n"
    "sys.path[:0] = {paths!r}\n"
    "start = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - start, len(sys.modules))\n"
)


@dataclass(frozen=True)
class Subject:
    name: str
    module: str
    directory: Path
    env: dict[str, str]

    def command(self, *options: str) -> list[str]:
        paths = [str(self.directory), str(LAYER)]
        return [sys.executable, *options, "-c", _CHILD.format(paths=paths, module=self.module)]

    def environment(self) -> dict[str, str]:
        return {**_LAMBDA_ENV, **self.env, "LAMBDA_TASK_ROOT": str(self.directory)}


SUBJECTS = {
    "ingest": Subject("ingest", "app", ROOT / "functions" / "ingest", INGEST_ENV),
    "ingest baseline": Subject("ingest baseline", "ingest_baseline", BASELINES, INGEST_ENV),
    "processor": Subject("processor", "app", ROOT / "functions" / "processor", PROCESSOR_ENV),
    "processor baseline": Subject("processor baseline", "processor_baseline", BASELINES, PROCESSOR_ENV),
}


def compile_bytecode() -> None:
    """Compile the project's modules and the baselines into ``__pycache__``."""
    for directory in (LAYER / "visma_webhooks", ROOT / "functions", BASELINES):
        compileall.compile_dir(directory, quiet=1)


def sample(subject: Subject) -> tuple[float, int]:
    done = subprocess.run(
        subject.command(), env=subject.environment(), capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing {subject.name} failed:\n{done.stderr[-2000:]}")
    seconds, modules = done.stdout.split()
    return float(seconds), int(modules)


_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_profile(subject: Subject) -> dict[str, float]:
    """Self time in ms of every module the import loads (``python -X importtime``)."""
    done = subprocess.run(
        subject.command("-X", "importtime"),
        env=subject.environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    profile: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            profile[match.group(4)] = int(match.group(1)) / 1000
    return profile


def _group(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "visma_webhooks":
        return module
    if parts[0] == "aws_lambda_powertools":
        return ".".join(parts[:3])
    return parts[0]


def explain(function: Subject, baseline: Subject, top: int = 8) -> dict[str, Any]:
    """What the function imports beyond its baseline, by package, and its own module-level code."""
    mine, theirs = import_profile(function), import_profile(baseline)
    extra: dict[str, float] = defaultdict(float)
    for module, self_ms in mine.items():
        if module not in theirs and module != function.module:
            extra[_group(module)] += self_ms
    ranked = sorted(extra.items(), key=lambda kv: kv[1], reverse=True)
    return {
        "module_level_code_ms": {
            function.name: round(mine.get(function.module, 0.0), 1),
            baseline.name: round(theirs.get(baseline.module, 0.0), 1),
        },
        "extra_imports_ms": {name: round(ms, 1) for name, ms in ranked[:top]},
        "extra_imports_total_ms": round(sum(extra.values()), 1),
    }


def run(samples: int = SAMPLES) -> dict[str, Any]:
    compile_bytecode()
    times: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    modules: dict[str, int] = {}
    names = list(SUBJECTS)
    for i in range(samples):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate the order
            seconds, count = sample(SUBJECTS[name])
            times[name].append(seconds)
            modules[name] = count
    result: dict[str, Any] = {
        "samples": samples,
        "bytecode": "project modules and baselines compiled with compileall before measuring",
        "environment": "fresh interpreter per sample, Lambda-like variables only, function dir + layers/ on sys.path",
        "median_ms": {n: round(statistics.median(t) * 1000, 1) for n, t in times.items()},
        "min_ms": {n: round(min(t) * 1000, 1) for n, t in times.items()},
        "modules_loaded": modules,
        "functions": {},
    }
    for function in ("ingest", "processor"):
        ratio = statistics.median(times[function]) / statistics.median(times[f"{function} baseline"])
        entry: dict[str, Any] = {
            "median_ms": result["median_ms"][function],
            "baseline_median_ms": result["median_ms"][f"{function} baseline"],
            "ratio": round(ratio, 3),
            "target": f"<= {TARGET_RATIO}x baseline",
            "met": ratio <= TARGET_RATIO,
        }
        entry["import_profile"] = explain(SUBJECTS[function], SUBJECTS[f"{function} baseline"])
        result["functions"][function] = entry
    return result
