"""Package sizes of the built functions and layer (``.aws-sam/build``, made by ``make build``).

The sizes come from ``tests.template.artifacts`` (the same numbers ``make sizes`` prints):
files, unpacked bytes and the deflated zip Lambda would receive. Powertools, pydantic and
boto3 come from the AWS-managed Powertools layer and the runtime, so they are not in these
sizes; an artefact that bundles one of them is reported. With no build yet, ``make build``
runs first; a build older than the latest change under ``functions/`` or ``layers/`` is
measured as it is and reported as stale.
"""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from tests.template.artifacts import PROVIDED, bundled, measure

BUILD = ROOT / ".aws-sam" / "build"
BUILD_TIMEOUT = 300


def largest_parts(layer: Path, top: int = 6) -> dict[str, int]:
    """The biggest top-level packages of a layer's ``python/`` directory, unpacked bytes."""
    parts: dict[str, int] = defaultdict(int)
    python = layer / "python"
    for path in python.rglob("*"):
        if path.is_file():
            relative = path.relative_to(python).parts
            name = relative[0] if len(relative) > 1 else "(top-level files)"
            parts[name.split("-")[0] if name.endswith(".dist-info") else name] += path.stat().st_size
    return dict(sorted(parts.items(), key=lambda kv: kv[1], reverse=True)[:top])


def build() -> str | None:
    """Run ``make build``; None on success, else why it failed."""
    try:
        done = subprocess.run(
            ["make", "build"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
            env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"make build did not finish: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return "make build failed: " + " | ".join(tail)
    return None


def _newest_source() -> float:
    sources = [ROOT / "template.yaml"]
    for top in (ROOT / "functions", ROOT / "layers"):
        sources += [p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return max(p.stat().st_mtime for p in sources)


def run() -> dict[str, Any]:
    built_now = False
    if not (BUILD / "template.yaml").is_file():
        problem = build()
        if problem:
            return {"available": False, "reason": problem}
        built_now = True
    artefacts: dict[str, Any] = {}
    for directory in sorted(p for p in BUILD.iterdir() if p.is_dir()):
        files, unpacked, zipped = measure(directory)
        entry: dict[str, Any] = {"files": files, "unpacked_bytes": unpacked, "zip_bytes": zipped}
        if (directory / "python").is_dir():
            entry["largest_parts_bytes"] = largest_parts(directory)
        entry["bundles_provided_packages"] = bundled(directory, PROVIDED)
        artefacts[directory.name] = entry
    if not artefacts:
        return {"available": False, "reason": f"{BUILD.relative_to(ROOT)} holds no built artefact"}
    built_at = (BUILD / "template.yaml").stat().st_mtime
    return {
        "available": True,
        "built_now": built_now,
        "built_at": datetime.fromtimestamp(built_at, UTC).isoformat(timespec="seconds"),
        "stale": _newest_source() > built_at,
        "source": str(BUILD.relative_to(ROOT)),
        "artefacts": artefacts,
    }
