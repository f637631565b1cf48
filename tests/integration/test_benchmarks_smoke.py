"""``make bench`` code paths, once each and quickly: the counted facts, never the timings.

The ingest and processor parts run for one round against a real moto server and the Visma
sandbox (both subprocesses on loopback, as in ``make bench``); the table and the Markdown
are rendered from what they return, and written where ``make bench`` writes them: never
over the committed results unless asked to. Timings are the benchmark's business, not a test's.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import ingest_bench, processor_bench
from benchmarks import run as bench
from benchmarks.common import moto_server
from visma_webhooks.adapters.budget_store import MAX_CHUNK


@pytest.fixture(scope="module")
def parts():
    with moto_server() as endpoint:
        return {
            "ingest": ingest_bench.run(endpoint, rounds=1),
            "processor": processor_bench.run(endpoint, rounds=1),
        }


def test_ingest_makes_one_sqs_call_per_ten_notifications(parts):
    ingest = parts["ingest"]
    assert ingest["problems"] == []
    for n in ingest_bench.SIZES:
        assert ingest["sqs_calls"][str(n)]["observed"] == [{"SendMessageBatch": math.ceil(n / 10)}]
    assert ingest["targets"]["calls = ceil(n/10)"]["met"]


def test_processor_fetches_each_resource_once_and_posts_feedback_once(parts):
    proc = parts["processor"]
    calls = proc["calls_last_round"]
    assert proc["failed_records"] == []
    assert proc["feedback_posted_more_than_once"] == []
    shared, batch = calls["shared"], calls["batch"]
    assert (shared["notifications"], shared["distinct_resources"]) == (10, 3)
    assert shared["visma"] == {"GET customer": 3, "POST webhooknotificationfeedback": 10}
    assert batch["visma"] == {"GET customer": 10, "POST webhooknotificationfeedback": 10}
    assert calls["one"]["visma"] == {"GET customer": 1, "POST webhooknotificationfeedback": 1}
    assert max(proc["visma_calls_per_notification"].values()) <= 2
    assert proc["tokens"]["total"] == 1, "one token for the whole run (cached per tenant)"
    assert proc["targets"]["GETs = distinct resources"]["met"]
    assert proc["targets"]["Visma calls per notification <= 2 + amortised tokens"]["met"]
    replay = proc["aws_emulator"]
    assert replay["records"] == 10
    assert sum(replay["dynamodb_calls"].values()) == 10 * replay["dynamodb_calls_per_record"]
    assert replay["refused"] == {}, "every replayed request met its conditions, as the processor's did"


def test_processor_makes_at_most_four_dynamodb_requests_per_notification(parts):
    """Claim (with the resource's lease), checkpoint (with its release), outcome; a budget
    chunk (MAX_CHUNK calls, two per notification) now and then; nothing else but the
    tenant's entry in tenants#seen, when Visma's headers move the window's end."""
    proc = parts["processor"]
    requests = proc["dynamodb_requests_per_notification"]
    chunks = math.ceil(2 * 10 / MAX_CHUNK)  # ten notifications, two calls each
    for name in ("batch", "sequential"):
        average = requests[name]
        assert average["total"] <= processor_bench.TARGET_REQUESTS
        assert set(average) - {processor_bench.SEEN} == {
            "TransactWriteItems",
            "UpdateItem",
            "PutItem",
            "total",
        }
        assert (average["TransactWriteItems"], average["UpdateItem"]) == (2, 1)
        assert average["PutItem"] * 10 == chunks
        assert average.get(processor_bench.SEEN, 0) <= 0.1
    alone = {json.dumps(a["requests"], sort_keys=True): a["invocations"] for a in requests["alone"]}
    chunk_held = {"TransactWriteItems": 2, "UpdateItem": 1}
    chunk_taken = chunk_held | {"PutItem": 1}
    assert alone[json.dumps(chunk_held, sort_keys=True)] >= 10 - chunks - 1
    assert sum(alone.values()) == 10
    for made in map(json.loads, alone):
        assert made in (
            chunk_held,
            chunk_taken,
            chunk_held | {processor_bench.SEEN: 1},
            chunk_taken | {processor_bench.SEEN: 1},
        )
    assert sum(n for made, n in alone.items() if "PutItem" in made) == chunks
    label = f"DynamoDB requests per notification <= {processor_bench.TARGET_REQUESTS} (batch of 10, budget included)"
    assert proc["targets"][label]["met"]
    assert proc["emulator_share_of_batch"] > 0


def test_table_and_markdown_render(parts):
    results = {
        "generated_at": "now",
        "machine": {"cpus": 2, "python": "3.13", "platform": "Linux"},
        "parts": parts,
        "targets": bench.targets(parts),
    }
    rows = bench.measurements(parts)
    assert {part for part, _, _ in rows} == {"ingest", "processor"}
    assert {t["part"] for t in results["targets"]} == {"ingest", "processor"}
    text = bench.markdown(results)
    assert "| ingest | handler, 10 notifications | " in text
    assert "| processor | DynamoDB requests per notification, batch of 10 (budget included) | " in text
    bench.show(results)


def test_a_run_writes_under_build_and_leaves_the_committed_results_alone(parts, tmp_path, monkeypatch):
    tracked = {path: path.read_bytes() for path in (bench.RECORDED, bench.RECORDED.with_suffix(".md"))}
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "build" / "results.json")
    monkeypatch.setattr(bench, "_part", lambda name, quick: dict(parts[name]))

    assert bench.main(["--quick", "--parts", "ingest,processor"]) == 0

    written = json.loads((tmp_path / "build" / "results.json").read_text())
    assert set(written["parts"]) == {"ingest", "processor"}
    assert "| ingest | handler, 10 notifications | " in (tmp_path / "build" / "results.md").read_text()
    assert {path: path.read_bytes() for path in tracked} == tracked


def test_record_also_writes_the_committed_results(parts, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "build" / "results.json")
    monkeypatch.setattr(bench, "RECORDED", tmp_path / "benchmarks" / "results.json")
    monkeypatch.setattr(bench, "_part", lambda name, quick: dict(parts[name]))

    assert bench.main(["--parts", "ingest", "--record"]) == 0

    for written in (
        "build/results.json",
        "build/results.md",
        "benchmarks/results.json",
        "benchmarks/results.md",
    ):
        assert (tmp_path / written).is_file()
