"""Throughput of the local stack end to end: signed deliveries in, feedback out.

``visma-webhooks local`` runs as a subprocess (moto server, the real functions, the
processor's pollers) against a Visma sandbox that this process runs. After a warm-up
delivery, 1,000 notifications are posted in arrays of ten by four senders; the clock
stops when Visma has received the feedback of every one. Report only: the local stack is
bound by the emulator, not by the functions.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import legacy_item, signed
from benchmarks.localstack import LocalStackProcess
from visma_webhooks_local.sandbox import VismaSandbox

NOTIFICATIONS = 1000
PER_REQUEST = 10
SENDERS = 4
POLLERS = 5  # the template's default MaximumConcurrency
SECRET = "throughput-webhook-secret"
CLIENT_ID, CLIENT_SECRET = "throughput-client", "throughput-client-secret"
TIMEOUT = 300.0


def _requests(count: int, run: str) -> list[tuple[list[str], bytes]]:
    bodies = []
    for start in range(0, count, PER_REQUEST):
        items = [
            legacy_item(f"tp-{run}-{i}", f"/v1/customer/{run}-{i}") for i in range(start, start + PER_REQUEST)
        ]
        bodies.append(([i["notificationId"] for i in items], json.dumps(items).encode()))
    return bodies


def _wait_for_feedback(sandbox: VismaSandbox, ids: set[str], deadline: float) -> int:
    while True:
        done = ids & {f["notificationId"] for f in sandbox.feedback}
        if len(done) == len(ids) or time.monotonic() > deadline:
            return len(done)
        time.sleep(0.1)


def run(notifications: int = NOTIFICATIONS, pollers: int = POLLERS) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="visma-throughput-") as tmp,
        VismaSandbox(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sandbox,
        LocalStackProcess(
            Path(tmp),
            visma_url=sandbox.url,
            token_url=sandbox.token_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            webhook_secrets=[SECRET],
            handler_modules="benchmarks.bench_handlers",
            options=["--pollers", str(pollers)],
        ) as stack,
    ):
        session = requests.Session()

        def post(body: bytes) -> int:
            return session.post(
                stack.webhook_url, data=body, headers=signed(body, SECRET), timeout=60
            ).status_code

        warm = _requests(PER_REQUEST, "warm-" + uuid.uuid4().hex[:6])
        for _, body in warm:
            post(body)
        _wait_for_feedback(sandbox, set(warm[0][0]), time.monotonic() + 60)

        batches = _requests(notifications, uuid.uuid4().hex[:8])
        ids = {i for nids, _ in batches for i in nids}
        start = time.monotonic()
        with ThreadPoolExecutor(SENDERS) as pool:
            statuses = list(pool.map(post, [body for _, body in batches]))
        ingested = time.monotonic() - start
        done = _wait_for_feedback(sandbox, ids, start + TIMEOUT)
        elapsed = time.monotonic() - start
        return {
            "notifications": notifications,
            "requests": len(batches),
            "per_request": PER_REQUEST,
            "senders": SENDERS,
            "pollers": pollers,
            "visma_latency_ms": 0,
            "accepted_requests": sum(1 for s in statuses if s == 202),
            "completed": done,
            "ingest_seconds": round(ingested, 2),
            "end_to_end_seconds": round(elapsed, 2),
            "ingest_per_second": round(notifications / ingested, 1),
            "end_to_end_per_second": round(done / elapsed, 1),
            "complete": done == notifications,
        }
