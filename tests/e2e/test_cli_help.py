"""Every command's ``--help`` at 80 columns shows each option name whole."""

from __future__ import annotations

import re
import subprocess

import pytest
import typer

from tests.e2e.conftest import COLUMNS, cli
from visma_webhooks_local.cli import app

pytestmark = pytest.mark.e2e

COMMANDS = typer.main.get_group(app).commands


def test_every_command_is_checked():
    assert {"local", "process", "send", "replay", "status", "inspect", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *sorted(COMMANDS)])
def test_help_at_80_columns_shows_every_option_name_whole(command, tmp_path):
    args = [command] if command else []
    result = subprocess.run(  # noqa: S603
        [*cli(), *args, "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= int(COLUMNS)
    params = COMMANDS[command].params if command else []
    names = [name for p in params for name in (*p.opts, *p.secondary_opts) if name.startswith("--")]
    for name in [*names, "--help"]:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.stdout), (
            f"{name} is cut:\n{result.stdout}"
        )
    cut = [line for line in lines if re.search(r"--[\w-]*…", line)]
    assert not cut, "\n".join(cut)
