"""``visma-webhooks send``: signed as the dispatcher signs, to a webhook server run by the test."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, cli
from visma_webhooks.domain.signature import SIGNATURE_HEADER, verify

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-send")]

SECRET = "send-test-secret"
EVENTS = ROOT / "events"


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        )
        status = 401 if self.path == "/reject" else 202
        answer = json.dumps({"message": "no"} if status == 401 else {"accepted": 1}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    received: list[dict] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Webhook", (_Webhook,), {"received": received}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def send(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [*cli(), "send", *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def ids(body: bytes) -> list[str]:
    data = json.loads(body)
    return [item["notificationId"] for item in (data if isinstance(data, list) else [data])]


def without_ids(body: bytes) -> list[dict]:
    return [{k: v for k, v in item.items() if k != "notificationId"} for item in json.loads(body)]


def test_a_legacy_body_is_sent_byte_for_byte_with_its_signature(webhook, tmp_path):
    url, received = webhook
    result = send(
        str(EVENTS / "legacy-grouped.json"),
        "--url",
        f"{url}/webhooks/visma",
        "--secret",
        SECRET,
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert "HTTP 202" in result.stdout
    [request] = received
    assert request["body"] == (EVENTS / "legacy-grouped.json").read_bytes()
    assert verify(request["body"], request["headers"][SIGNATURE_HEADER], [SECRET])
    assert not verify(request["body"], request["headers"][SIGNATURE_HEADER], ["another-secret"])


def test_an_envelope_sends_its_headers_with_a_fresh_timestamp(webhook, tmp_path):
    url, received = webhook
    envelope = json.loads((EVENTS / "dispatcher-delivery.json").read_text())
    result = send(str(EVENTS / "dispatcher-delivery.json"), "--url", url, "--secret", SECRET, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    [request] = received
    assert json.loads(request["body"]) == envelope["body"]
    assert verify(request["body"], request["headers"][SIGNATURE_HEADER], [SECRET])
    sent_headers = {k.lower(): v for k, v in envelope["headers"].items()}
    for name in ("x-vwd-tenant-id", "x-vwd-notification-id"):
        assert request["headers"][name] == sent_headers[name]
    assert abs(int(request["headers"]["x-vwd-webhook-timestamp"]) / 1000 - time.time()) < 60


def test_new_ids_gives_every_notification_a_fresh_id_each_time(webhook, tmp_path):
    url, received = webhook
    sample = EVENTS / "legacy-grouped.json"
    for _ in range(2):
        assert send(str(sample), "--new-ids", "--url", url, "--secret", SECRET, cwd=tmp_path).returncode == 0

    original = ids(sample.read_bytes())
    first, second = (ids(r["body"]) for r in received)
    assert len(first) == len(second) == len(original)
    assert not set(first) & set(original)
    assert not set(first) & set(second)
    assert all(verify(r["body"], r["headers"][SIGNATURE_HEADER], [SECRET]) for r in received)
    # everything but the ids is as in the sample
    assert without_ids(received[0]["body"]) == without_ids(sample.read_bytes())


def test_a_bad_file_or_a_refused_delivery_exits_1_and_the_other_files_still_go(webhook, tmp_path):
    url, received = webhook
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = send(
        str(broken), str(EVENTS / "legacy-single.json"), "--url", url, "--secret", SECRET, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "broken.json" in result.stderr
    assert len(received) == 1  # the good file was sent

    refused = send(
        str(EVENTS / "legacy-single.json"), "--url", f"{url}/reject", "--secret", SECRET, cwd=tmp_path
    )
    assert refused.returncode == 1
    assert "HTTP 401" in refused.stdout


def test_without_a_local_stack_the_url_and_the_secret_are_asked_for(tmp_path):
    no_secret = send(
        str(EVENTS / "legacy-single.json"), "--url", "http://127.0.0.1:9/webhooks/visma", cwd=tmp_path
    )
    assert no_secret.returncode == 1
    assert "--secret is needed with --url" in no_secret.stderr
    no_stack = send(
        str(EVENTS / "legacy-single.json"), "--state-file", str(tmp_path / "none.json"), cwd=tmp_path
    )
    assert no_stack.returncode == 1
    assert "no local stack found" in no_stack.stderr
    assert "(or pass --url and --secret)" in no_stack.stderr
    assert "Traceback" not in no_secret.stderr

    missing = send(
        str(tmp_path / "nowhere.json"), "--url", "http://127.0.0.1:9", "--secret", SECRET, cwd=tmp_path
    )
    assert missing.returncode == 2  # the CLI's usage error: the file does not exist
    assert "does not exist" in missing.stderr
