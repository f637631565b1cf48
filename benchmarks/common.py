"""Shared pieces of the benchmarks and the soak: moto server, environment, signed deliveries."""

from __future__ import annotations

import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, overload

import boto3
import requests

from visma_webhooks.domain.signature import SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_secretsmanager import SecretsManagerClient
    from types_boto3_sqs import SQSClient

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-west-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# What a function's handler module sees besides its own settings: quiet logs and no EMF
# output on the bench's screen (the work of the handler is otherwise the same).
QUIET_POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "visma-webhooks-bench",
    "POWERTOOLS_METRICS_NAMESPACE": "VismaWebhooks",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
}

_MOTO_CHILD = """
import socket, sys
from visma_webhooks_local.stack.moto_transactions import install
install()
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

class Handler(MotoRequestHandler):
    def setup(self):
        super().setup()
        if {nodelay}:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), True, request_handler=Handler)
print(server.server_address[1], flush=True)
import threading
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # until the parent closes the pipe
"""


def _first_line(stream: IO[str] | None, timeout: float) -> str:
    """The first line a child prints on ``stream`` within ``timeout`` seconds, else ""."""
    if stream is None:
        return ""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


@contextlib.contextmanager
def moto_server(timeout: float = 30.0, nodelay: bool = True) -> Iterator[str]:
    """moto server in its own process on 127.0.0.1 (a free port); yields its URL.

    A separate process, so that the emulator's CPU time does not share the GIL with the
    code being measured (as real AWS would not). With ``nodelay`` its sockets set
    TCP_NODELAY: werkzeug writes a response's headers and body separately, and without it
    Nagle's algorithm meets the client's delayed ACK and adds ~40 ms to many calls, a
    loopback artefact that would hide everything else.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | FAKE_CREDENTIALS
    child = subprocess.Popen(
        [sys.executable, "-c", _MOTO_CHILD.format(nodelay=nodelay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        line = _first_line(child.stdout, timeout)
        if not line.strip().isdigit():
            raise RuntimeError("moto server did not start")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        with contextlib.suppress(OSError):
            if child.stdin:
                child.stdin.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class SandboxProcess:
    """The Visma sandbox in its own process (``python -m visma_webhooks_local.sandbox``), like a remote Visma.

    The request log, the feedback and the faults go through its control API.
    """

    def __init__(self, *options: str, timeout: float = 30.0):
        self._child = subprocess.Popen(
            [sys.executable, "-m", "visma_webhooks_local.sandbox", "--port", "0", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = _first_line(self._child.stdout, timeout)
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise RuntimeError(f"the Visma sandbox did not start: {line!r}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        self.token_url = self.url + "/connect/token"
        self._http = requests.Session()

    def _control(self, method: str, name: str, body: Any = None) -> Any:
        response = self._http.request(method, f"{self.url}/_sandbox/{name}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._control("GET", "requests")

    @property
    def feedback(self) -> list[dict[str, Any]]:
        return self._control("GET", "feedback")

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        return self._control("POST", "faults", settings)

    def stop(self) -> None:
        if self._child.poll() is None:
            self._child.terminate()
            try:
                self._child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait(timeout=5)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@overload
def client(service: Literal["sqs"], endpoint: str) -> SQSClient: ...
@overload
def client(service: Literal["dynamodb"], endpoint: str) -> DynamoDBClient: ...
@overload
def client(service: Literal["secretsmanager"], endpoint: str) -> SecretsManagerClient: ...
def client(
    service: Literal["sqs", "dynamodb", "secretsmanager"], endpoint: str
) -> SQSClient | DynamoDBClient | SecretsManagerClient:
    """A client for the emulator at ``endpoint``, with fake credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_queues(endpoint: str, prefix: str, max_receive: int = 5, visibility: int = 180) -> dict[str, str]:
    """A queue with a DLQ wired as template.yaml wires them."""
    sqs = client("sqs", endpoint)
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=prefix,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        },
    )["QueueUrl"]
    return {"queue_url": queue_url, "dlq_url": dlq_url}


def drain(sqs: SQSClient, queue_url: str, limit: int = 10_000) -> int:
    """Receive and delete every visible message (moto's SendMessageBatch slows as a queue grows)."""
    removed = 0
    while removed < limit:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
            "Messages", []
        )
        if not messages:
            break
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        removed += len(messages)
    return removed


def legacy_item(nid: str, resource: str, tenant: str = "1262489", event: str = "customer_changed") -> dict:
    """One legacy notification item, as Visma.net Integrations sends it."""
    return {
        "notificationId": nid,
        "contextId": tenant,
        "event": event,
        "resourceUri": f"https://integration.visma.net/API/controller/api{resource}",
        "timeStamp": 638680512000000000,
    }


def signed(body: bytes, secret: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"content-type": "application/json", SIGNATURE_HEADER: sign(body, secret), **(extra or {})}


def median_ms(samples: Sequence[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def verdict(met: bool) -> str:
    return "met" if met else "missed"
