"""Package sizes of the built functions and layer (``.aws-sam/build``, made by ``make build``).

Each artefact is reported unpacked and as the zip SAM would upload (deflate, computed in
memory), with the layer's largest top-level packages. Powertools, pydantic and boto3 come
from the AWS-managed Powertools layer and the runtime, so they are not in these sizes.
"""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

BUILD = ROOT / ".aws-sam" / "build"
BUILD_TIMEOUT = 300


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _zipped(directory: Path, files: list[Path]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(directory))
    return buffer.tell()


def measure(directory: Path) -> dict[str, Any]:
    files = _files(directory)
    entry: dict[str, Any] = {
        "files": len(files),
        "unpacked_bytes": sum(p.stat().st_size for p in files),
        "zip_bytes": _zipped(directory, files),
    }
    python = directory / "python"
    if python.is_dir():  # a layer: which packages take the space
        parts: dict[str, int] = defaultdict(int)
        for path in files:
            relative = path.relative_to(python).parts
            name = relative[0] if len(relative) > 1 else "(top level files)"
            if name == "visma_webhooks" and len(relative) > 2:
                name = f"visma_webhooks/{relative[1]}" if relative[1] == "local" else name
            parts[name.split("-")[0] if name.endswith(".dist-info") else name] += path.stat().st_size
        ranked = sorted(parts.items(), key=lambda kv: kv[1], reverse=True)
        entry["largest_parts_bytes"] = dict(ranked[:8])
    return entry


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


def run() -> dict[str, Any]:
    built_now = False
    if not BUILD.is_dir():
        problem = build()
        if problem:
            return {"available": False, "reason": problem}
        built_now = True
    artefacts = {p.name: measure(p) for p in sorted(BUILD.iterdir()) if p.is_dir()}
    if not artefacts:
        return {"available": False, "reason": f"{BUILD.relative_to(ROOT)} holds no built artefact"}
    return {
        "available": True,
        "built_now": built_now,
        "source": str(BUILD.relative_to(ROOT)),
        "artefacts": artefacts,
    }
