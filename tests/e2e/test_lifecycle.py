"""Stopping ``visma-webhooks local``: SIGTERM finishes the batch in flight, a second signal abandons it."""

from __future__ import annotations

import signal
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import LocalStackProcess, legacy_item, new_id, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-lifecycle")]


def listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


def start_slow(tmp_path, sandbox, delay: float) -> tuple[LocalStackProcess, str]:
    """A stack with one notification in flight: its resource answers after ``delay`` seconds."""
    stack = LocalStackProcess(tmp_path, sandbox).start()
    nid, path = new_id(), f"/v1/customer/slow-{new_id()[:8]}"
    sandbox.add_rule(path, delay=delay)
    assert stack.post([legacy_item(nid, path.removeprefix("/v1/"))]).status_code == 202
    wait_for(lambda: any(r["path"] == path for r in sandbox.requests) or stack.record(nid), 20, "the fetch")
    return stack, nid


def test_sigterm_finishes_the_batch_in_flight_then_stops_everything(tmp_path, sandbox):
    stack, nid = start_slow(tmp_path, sandbox, delay=3)
    urls = (stack.url, stack.state.aws_endpoint_url)
    assert all(listening(u) for u in urls)

    started = time.monotonic()
    assert stack.stop(signal.SIGTERM) == 0, stack.log()
    took = time.monotonic() - started

    # the notification in flight was finished, with its feedback, before the stack stopped
    assert [f["isSuccess"] for f in stack.feedback(nid)] == [True]
    assert took < 15, f"stopping took {took:.1f} s"
    output = stack.log()
    assert "finishing the batch in flight" in output
    assert "stopped" in output
    assert "abandoned" not in output
    assert not any(listening(u) for u in urls)  # webhook endpoint and moto server are gone
    assert not stack.state_file.exists()
    assert "Traceback" not in output


def test_a_second_sigint_abandons_the_batch_in_flight(tmp_path, sandbox):
    stack, nid = start_slow(tmp_path, sandbox, delay=30)
    assert stack.process is not None
    stack.process.send_signal(signal.SIGINT)
    wait_for(lambda: "finishing the batch in flight" in stack.log(), 10, "the graceful stop to begin")
    started = time.monotonic()
    assert stack.stop(signal.SIGINT) == 0, stack.log()
    assert time.monotonic() - started < 10

    output = stack.log()
    assert "a batch was abandoned; it returns to the queue" in output
    assert stack.feedback(nid) == []  # nothing was reported for the abandoned notification
    assert not listening(stack.url)
    assert "Traceback" not in output
