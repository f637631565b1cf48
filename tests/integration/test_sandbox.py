"""The embedded Visma sandbox over real sockets: in-process and as a subprocess."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.sandbox_support import RATE_HEADERS, TENANT, auth, token
from visma_webhooks.domain.models import normalise_event
from visma_webhooks.domain.resources import Resource, ResourceRules
from visma_webhooks.domain.services import FINANCIALS, SALESORDERS
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.sandbox.fixtures import DEFAULT_FIXTURES, DEFAULT_SERVICE_FIXTURES

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def resource_paths_in(node: object, rules: ResourceRules) -> set[Resource]:
    """The resources named anywhere in ``node`` (JSON strings inside it included), deletions aside."""
    if isinstance(node, str) and node.lstrip()[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            return resource_paths_in(json.loads(node), rules)  # an API Gateway event's body
    if isinstance(node, list):
        return set().union(*(resource_paths_in(item, rules) for item in node))
    if not isinstance(node, dict):
        return set()
    events = [v for k, v in node.items() if k.lower() in ("event", "eventtype") and isinstance(v, str)]
    if any(normalise_event(e).endswith("_deleted") for e in events):
        return set()  # a deletion is never fetched
    paths: set[Resource] = set()
    for key, value in node.items():
        if key.lower() == "resourceuri" and isinstance(value, str):
            paths.add(rules.resolve(value))
        elif key.lower() == "relativeresourceuri" and isinstance(value, str):
            paths.add(rules.resolve_relative(value))
        else:
            paths |= resource_paths_in(value, rules)
    return paths


def sample_resource_paths() -> set[Resource]:
    """Every resource that the sample notifications in events/ name (404 samples aside)."""
    rules = ResourceRules()
    paths: set[Resource] = set()
    for file in EVENTS.glob("*.json"):
        if file.resolve() not in (DEFAULT_FIXTURES.resolve(), DEFAULT_SERVICE_FIXTURES.resolve()):
            paths |= resource_paths_in(json.loads(file.read_text()), rules)
    return {r for r in paths if not any(s.startswith("missing") for s in r.path.split("/")[3:])}


# -- tokens ------------------------------------------------------------------------------


def test_token_endpoint_issues_bearer_tokens(sandbox, http):
    response = http.post(
        sandbox.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": "a",
            "client_secret": "b",
            "tenant_id": TENANT,
        },
        timeout=5,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 20
    for name in RATE_HEADERS:
        assert name in response.headers


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password", "tenant_id": TENANT}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "tenant_id": TENANT, "client_secret": "nope"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "tenant_id": TENANT, "client_id": "other"},
            401,
            "invalid_client",
        ),
    ],
)
def test_token_endpoint_refuses_bad_requests(http, form, status, error):
    with VismaSandbox(client_id="the-id", client_secret="the-secret") as sb:
        data = {"client_id": "the-id", "client_secret": "the-secret", **form}
        response = http.post(sb.token_url, data=data, timeout=5)
        assert response.status_code == status
        assert response.json()["error"] == error


def test_token_endpoint_accepts_http_basic_client_auth(http):
    with VismaSandbox(client_id="the-id", client_secret="the-secret") as sb:
        basic = base64.b64encode(b"the-id:the-secret").decode()
        response = http.post(
            sb.token_url,
            data={"grant_type": "client_credentials", "tenant_id": TENANT},
            headers={"Authorization": f"Basic {basic}"},
            timeout=5,
        )
        assert response.status_code == 200


def test_api_requires_a_valid_unexpired_token(http):
    with VismaSandbox(token_ttl=1) as sb:
        url = sb.url + "/v1/customer/10001"
        assert http.get(url, timeout=5).status_code == 401
        assert http.get(url, headers=auth("made-up"), timeout=5).status_code == 401
        value = token(sb, http)
        assert http.get(url, headers=auth(value), timeout=5).status_code == 200
        time.sleep(1.1)
        response = http.get(url, headers=auth(value), timeout=5)
        assert response.status_code == 401
        assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_tokens_are_bound_to_their_tenant_and_can_be_revoked(sandbox, http):
    a, b = token(sandbox, http, "tenant-a"), token(sandbox, http, "tenant-b")
    http.get(sandbox.url + "/v1/customer/1", headers=auth(a), timeout=5)
    http.get(sandbox.url + "/v1/customer/2", headers=auth(b), timeout=5)
    tenants = [r["tenant"] for r in sandbox.requests if r["path"].startswith("/v1/")]
    assert tenants == ["tenant-a", "tenant-b"]
    revoked = http.post(sandbox.url + "/_sandbox/revoke-tokens", json={"tenant": "tenant-a"}, timeout=5)
    assert revoked.json() == {"revoked": 1}
    assert http.get(sandbox.url + "/v1/customer/1", headers=auth(a), timeout=5).status_code == 401
    assert http.get(sandbox.url + "/v1/customer/1", headers=auth(b), timeout=5).status_code == 200


# -- resources ---------------------------------------------------------------------------


def test_every_resource_named_in_the_samples_is_a_fixture(sandbox, http):
    resources = sample_resource_paths()
    fixtures = {FINANCIALS: json.loads(DEFAULT_FIXTURES.read_text())}
    fixtures |= json.loads(DEFAULT_SERVICE_FIXTURES.read_text())
    assert len(resources) >= 7
    assert {r.service for r in resources} >= {FINANCIALS, SALESORDERS}
    headers = auth(token(sandbox, http))
    for resource in sorted(resources, key=lambda r: (r.service, r.path)):
        assert resource.path in fixtures[resource.service], resource
        response = http.get(sandbox.urls[resource.service] + resource.path, headers=headers, timeout=5)
        assert response.status_code == 200, resource
        assert response.json() == fixtures[resource.service][resource.path]
        assert "synthetic" not in response.json()


def test_unknown_ids_are_synthesised_and_missing_ids_are_404(sandbox, http):
    headers = auth(token(sandbox, http))
    response = http.get(sandbox.url + "/v1/salesorder/SO/9999", headers=headers, timeout=5)
    assert response.json() == {"id": "SO/9999", "entity": "salesorder", "synthetic": True}
    for path in ("/v1/customer/missing-1", "/v1/salesorder/SO/missing", "/v3/customer/1"):
        assert http.get(sandbox.url + path, headers=headers, timeout=5).status_code == 404, path
    sandbox.set_resource("/v1/customer/missing-2", {"number": "missing-2"})
    assert http.get(sandbox.url + "/v1/customer/missing-2", headers=headers, timeout=5).status_code == 404


def test_without_synthesis_only_fixtures_are_served(http):
    with VismaSandbox(fixtures={"/v1/customer/1": {"number": "1"}}, synthesize=False) as sb:
        headers = auth(token(sb, http))
        served = http.get(sb.url + "/v1/customer/1", headers=headers, timeout=5).json()
        assert served == {"number": "1", "lastModifiedDateTime": served["lastModifiedDateTime"]}  # stamped
        assert http.get(sb.url + "/v1/customer/2", headers=headers, timeout=5).status_code == 404


def test_fixtures_must_be_paths_under_v1(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"customer/1": {}}))
    with pytest.raises(ValueError, match="/v1/"):
        VismaSandbox(fixtures=bad)


def test_documents_can_be_added_over_http(sandbox, http):
    doc = {"number": "30001", "name": "Added AS"}
    assert http.post(sandbox.url + "/_sandbox/resources", json={"/v1/customer/30001": doc}, timeout=5).ok
    headers = auth(token(sandbox, http))
    served = http.get(sandbox.url + "/v1/customer/30001", headers=headers, timeout=5).json()
    assert served == {**doc, "lastModifiedDateTime": served["lastModifiedDateTime"]}


# -- feedback and writes -----------------------------------------------------------------


def test_feedback_is_recorded_and_answered_201(sandbox, http):
    headers = auth(token(sandbox, http))
    body = {"notificationId": "1455fe2a", "source": "visma-webhooks", "description": "ok", "isSuccess": True}
    response = http.post(
        sandbox.url + "/v1/webhooknotificationfeedback", json=body, headers=headers, timeout=5
    )
    assert response.status_code == 201
    [record] = http.get(sandbox.url + "/_sandbox/feedback", timeout=5).json()
    assert record["tenant"] == TENANT
    assert {k: record[k] for k in body} == body
    assert record["received_at"].endswith("Z")
    assert sandbox.feedback == [record]


@pytest.mark.parametrize(
    "body",
    [
        {"source": "x", "isSuccess": True},
        {"notificationId": "", "isSuccess": True},
        {"notificationId": "n", "isSuccess": "yes"},
        {"notificationId": "n", "isSuccess": True, "description": 5},
        ["not", "an", "object"],
    ],
)
def test_invalid_feedback_is_400_and_not_recorded(sandbox, http, body):
    headers = auth(token(sandbox, http))
    response = http.post(
        sandbox.url + "/v1/webhooknotificationfeedback", json=body, headers=headers, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["message"]
    assert sandbox.feedback == []


def test_writes_are_recorded(sandbox, http):
    headers = auth(token(sandbox, http))
    put = http.put(
        sandbox.url + "/v1/customer/10001", json={"name": {"value": "X"}}, headers=headers, timeout=5
    )
    post = http.post(
        sandbox.url + "/v1/customer", json={"number": {"value": "1"}}, headers=headers, timeout=5
    )
    assert (put.status_code, post.status_code) == (204, 201)
    writes = http.get(sandbox.url + "/_sandbox/writes", timeout=5).json()
    assert [(w["method"], w["path"], w["body"], w["tenant"]) for w in writes] == [
        ("PUT", "/v1/customer/10001", {"name": {"value": "X"}}, TENANT),
        ("POST", "/v1/customer", {"number": {"value": "1"}}, TENANT),
    ]


# -- lifecycle ---------------------------------------------------------------------------


def test_stop_closes_keep_alive_connections_and_wakes_hanging_requests(http):
    sb = VismaSandbox(timeout_rate=1.0, timeout_seconds=30).start()
    headers = auth(token(sb, http))  # leaves a keep-alive connection in the session's pool
    url = sb.url + "/v1/customer/1"

    def hang() -> None:
        with contextlib.suppress(requests.RequestException):
            requests.get(url, headers=headers, timeout=60)

    hung = threading.Thread(target=hang, daemon=True)
    hung.start()
    time.sleep(0.3)
    assert hung.is_alive()
    started = time.monotonic()
    sb.stop()
    assert time.monotonic() - started < 3
    hung.join(5)
    assert not hung.is_alive()
    with pytest.raises(requests.ConnectionError):
        http.get(url, headers=headers, timeout=5)


def test_runs_as_a_subprocess_and_stops_on_sigterm(tmp_path):
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(json.dumps({"/v1/customer/7": {"number": "7"}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers")}
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "visma_webhooks_local.sandbox", "--port", "0", "--latency", "0.01",
         "--fixtures", str(fixtures), "--rate-limit", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (
            proc.stderr.read() if proc.poll() is not None else line
        )
        url = line.rsplit(" ", 1)[1].strip()
        with requests.Session() as http:
            assert http.get(url + "/_sandbox/health", timeout=5).json() == {"ok": True}
            value = token(VismaSandboxAt(url), http)
            response = http.get(url + "/v1/customer/7", headers=auth(value), timeout=5)
            assert response.json()["number"] == "7"
            assert response.headers["X-RateLimit-Limit"] == "50"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class VismaSandboxAt:
    """The two URLs that ``token`` needs, for a sandbox in another process."""

    def __init__(self, url: str):
        self.url = url
        self.token_url = url + "/connect/token"
