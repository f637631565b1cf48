"""What the CLI refuses, with a clear message, an exit code of 1 and nothing started."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.conftest import cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-refusals")]


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [*cli(), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


@pytest.mark.parametrize(
    ("options", "missing"),
    [
        (["--visma-base-url", "https://api.example.com"], "--client-id, --client-secret"),
        (["--client-id", "id", "--client-secret", "s"], "--visma-base-url"),
        (
            ["--token-url", "https://connect.example.com/token"],
            "--visma-base-url, --client-id, --client-secret",
        ),
    ],
)
def test_local_with_part_of_the_visma_options(tmp_path, options, missing):
    result = run("local", "--port", "0", *options, cwd=tmp_path)
    assert result.returncode == 1
    assert f"talking to a real Visma needs {missing} too" in result.stderr
    assert not (tmp_path / ".visma-webhooks").exists()  # nothing was started


@pytest.fixture
def dead_stack(tmp_path):
    """A state file left by a stack whose process is gone (no pid is that high)."""
    state = {
        "pid": 999_999_999,
        "started_at": "2026-11-30T10:00:00+00:00",
        "region": "eu-west-1",
        "aws_endpoint_url": "http://127.0.0.1:9",
        "stack_name": "visma-webhooks-local",
        "queue_url": "http://127.0.0.1:9/123456789012/q",
        "queue_arn": "arn:aws:sqs:eu-west-1:123456789012:q",
        "dlq_url": "http://127.0.0.1:9/123456789012/d",
        "dlq_arn": "arn:aws:sqs:eu-west-1:123456789012:d",
        "table_name": "t",
        "webhook_secret_arn": "w",
        "visma_secret_arn": "v",
        "webhook_url": "http://127.0.0.1:9/webhooks/visma",
        "visma_base_url": "http://127.0.0.1:9",
        "token_url": "http://127.0.0.1:9/connect/token",
        "sandbox_url": None,
        "max_receive_count": 5,
    }
    path = tmp_path / "local.json"
    path.write_text(json.dumps(state))
    return path


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["status"], "is not running any more; start it again"),
        (["replay", "--dry-run"], "is not running any more; start it again"),
        (["inspect", "some-id"], "is not running any more; start it again"),
        (["process"], "the local stack (pid 999999999) is not running"),
    ],
)
def test_commands_on_a_stack_that_has_stopped(tmp_path, dead_stack, command, message):
    result = run(*command, "--state-file", str(dead_stack), cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_state_file_that_is_not_one(tmp_path):
    path = tmp_path / "local.json"
    path.write_text("not json")
    result = run("status", "--state-file", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "is not a state file" in result.stderr


def test_no_local_stack_at_all(tmp_path):
    result = run("status", cwd=tmp_path)
    assert result.returncode == 1
    assert "no local stack found" in result.stderr
    assert "start one with `visma-webhooks local`" in result.stderr
