"""``visma-webhooks local`` on its own sandbox with faults, against an AWS emulator it did not start."""

from __future__ import annotations

import json
import signal
import subprocess

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from tests.e2e.conftest import cli, legacy_item, new_id, wait_for
from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks.domain.signature import sign
from visma_webhooks_local.stack.state import StackState

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-embedded")]

SECRET = "embedded-secret"


def test_the_embedded_sandbox_injects_faults_and_an_external_emulator_holds_the_resources(tmp_path):
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    state_file = tmp_path / "local.json"
    output = tmp_path / "local.out"
    command = [
        *cli(),
        "local",
        "--port",
        "0",
        "--aws-endpoint-url",
        endpoint,
        "--webhook-secret",
        SECRET,
        "--sandbox-latency",
        "0.05",
        "--sandbox-error-rate",
        "0.3",
        "--sandbox-seed",
        "4",  # its first draws are faults: unseeded, 0.7^12 of runs injected none
        "--retry-base-seconds",
        "0.2",
        "--state-file",
        str(state_file),
        "--function-logs",
        str(tmp_path / "functions.log"),
    ]
    with open(output, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)  # noqa: S603
    try:

        def ready() -> StackState | None:
            assert process.poll() is None, output.read_text()
            try:
                return StackState.load(state_file)
            except Exception:
                return None

        state = wait_for(ready, 60, "the local stack to start")
        assert state.aws_endpoint_url == endpoint
        assert state.sandbox_url  # no Visma options: the embedded sandbox
        banner = wait_for(
            lambda: "Ctrl-C stops" in output.read_text() and output.read_text(), 10, "the banner"
        )
        [aws_line] = [line for line in banner.splitlines() if "│ AWS " in line]
        assert endpoint in aws_line
        assert "moto server" not in aws_line  # it started none of its own

        # The resources live in the emulator the test started.
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=state.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        urls = sqs.list_queues()["QueueUrls"]
        assert state.queue_url in urls
        assert state.dlq_url in urls
        redrive = json.loads(
            sqs.get_queue_attributes(QueueUrl=state.queue_url, AttributeNames=["RedrivePolicy"])[
                "Attributes"
            ]["RedrivePolicy"]
        )
        assert redrive["deadLetterTargetArn"] == state.dlq_arn

        ids = [new_id() for _ in range(6)]
        body = json.dumps([legacy_item(nid, f"customer/{10001 + i}") for i, nid in enumerate(ids)]).encode()
        response = requests.post(
            state.webhook_url,
            data=body,
            headers={"content-type": "application/json", "x-vwd-signature-v1": sign(body, SECRET)},
            timeout=30,
        )
        assert response.status_code == 202
        store = DynamoDBOutcomeStore(state.table_name, state.client("dynamodb"), 0)
        wait_for(
            lambda: all((r := store.get(nid)) is not None and r.outcome == "succeeded" for nid in ids),
            60,
            "every notification to succeed despite the faults",
        )

        calls = requests.get(state.sandbox_url + "/_sandbox/requests", timeout=10).json()
        api = [c for c in calls if c["path"].startswith("/v1/")]
        assert any(c.get("fault") for c in api), "the error rate injected no fault"
        assert all(c["duration"] >= 0.05 for c in api), "the latency was not applied"
        feedback = requests.get(state.sandbox_url + "/_sandbox/feedback", timeout=10).json()
        assert {f["notificationId"] for f in feedback if f["isSuccess"]} >= set(ids)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        code = process.returncode
        still_there = sqs_alive(endpoint)
        moto.stop()
    assert code == 0, output.read_text()
    assert still_there, "stopping the stack stopped an emulator it did not start"


def sqs_alive(endpoint: str) -> bool:
    try:
        return requests.get(endpoint, timeout=5).status_code < 500
    except requests.RequestException:
        return False
