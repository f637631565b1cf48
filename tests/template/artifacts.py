"""Sizes of the ``sam build`` artifacts, and a guard on what they may hold.

``python -m tests.template.artifacts [.aws-sam/build]`` prints, per function and layer, the
files, the unzipped size and the size of the zip Lambda would receive. It exits non-zero if
an artifact bundles a package that the runtime or the AWS-managed Powertools layer provides,
or any of the developer tooling: the ``visma_webhooks_local`` package (CLI, local stack,
sandbox) and the libraries only it needs (moto, typer, rich, PyYAML), which cannot even be
imported in Lambda.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

PROVIDED = ("aws_lambda_powertools", "pydantic", "pydantic_core", "boto3", "botocore", "s3transfer")
TOOLING = ("visma_webhooks_local", "moto", "typer", "rich", "yaml", "_yaml")


def measure(directory: Path) -> tuple[int, int, int]:
    """(files, unzipped bytes, deflated zip bytes) of one artifact directory."""
    buffer = io.BytesIO()
    files = unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(directory))
            files += 1
            unzipped += path.stat().st_size
    return files, unzipped, len(buffer.getvalue())


def bundled(directory: Path, names: tuple[str, ...]) -> list[str]:
    """Those of the top-level packages or modules ``names`` that the artifact holds."""
    roots = [directory, directory / "python"]
    return sorted(
        name
        for root in roots
        for name in names
        if (root / name).exists() or (root / f"{name}.py").exists() or any(root.glob(f"{name}.*.so"))
    )


def problems(directory: Path) -> list[str]:
    """What must not be in the artifact: packages provided elsewhere, and any tooling."""
    return [
        f"{directory.name} bundles {name} (it comes from the runtime or the managed Powertools layer)"
        for name in bundled(directory, PROVIDED)
    ] + [
        f"{directory.name} bundles {name} (developer tooling, never deployed)"
        for name in bundled(directory, TOOLING)
    ]


def main(argv: list[str]) -> int:
    build = Path(argv[0] if argv else ".aws-sam/build")
    artifacts = sorted(p for p in build.iterdir() if p.is_dir()) if build.is_dir() else []
    if not artifacts:
        print(f"no artifacts in {build}: run `make build` first", file=sys.stderr)
        return 2
    print(f"{'artifact':<20} {'files':>6} {'unzipped KiB':>13} {'zipped KiB':>11}")
    failures = []
    for artifact in artifacts:
        files, unzipped, zipped = measure(artifact)
        print(f"{artifact.name:<20} {files:>6} {unzipped / 1024:>13.1f} {zipped / 1024:>11.1f}")
        failures += problems(artifact)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
