"""The artifacts check refuses a build that bundles the managed layer's packages or any tooling."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.template.artifacts import main, problems


def layer(tmp_path: Path, *entries: str) -> Path:
    """A built layer (``SharedLayer/python/...``) holding the runtime package and ``entries``."""
    root = tmp_path / "build" / "SharedLayer" / "python"
    (root / "visma_webhooks").mkdir(parents=True)
    (root / "visma_webhooks" / "__init__.py").write_text("")
    for entry in entries:
        path = root / entry
        if entry.endswith((".py", ".so")):
            path.write_text("")
        else:
            path.mkdir()
            (path / "__init__.py").write_text("")
    return root.parent


def test_the_runtime_alone_passes(tmp_path, capsys):
    artifact = layer(tmp_path, "requests", "urllib3")
    assert problems(artifact) == []
    assert main([str(artifact.parent)]) == 0
    assert "SharedLayer" in capsys.readouterr().out


@pytest.mark.parametrize(
    "entry",
    ["visma_webhooks_local", "moto", "typer", "rich", "yaml", "_yaml.cpython-313-aarch64-linux-gnu.so"],
)
def test_tooling_in_the_layer_fails_the_check(tmp_path, capsys, entry):
    artifact = layer(tmp_path, entry)
    name = entry.split(".")[0]
    assert problems(artifact) == [f"SharedLayer bundles {name} (developer tooling, never deployed)"]
    assert main([str(artifact.parent)]) == 1
    assert f"bundles {name}" in capsys.readouterr().err


@pytest.mark.parametrize("entry", ["boto3", "pydantic", "aws_lambda_powertools"])
def test_a_package_the_runtime_provides_fails_the_check(tmp_path, entry):
    assert problems(layer(tmp_path, entry)) == [
        f"SharedLayer bundles {entry} (it comes from the runtime or the managed Powertools layer)"
    ]


def test_an_empty_build_directory_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "make build" in capsys.readouterr().err
