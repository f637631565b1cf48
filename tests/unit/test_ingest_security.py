"""Ingest's optional guards: the dispatcher timestamp tolerance and the source-IP allow-list."""

from __future__ import annotations

import json

import pytest

from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.ingest import Ingestor
from visma_webhooks.domain.settings import IngestSettings, networks
from visma_webhooks.domain.signature import sign

SECRET = "tolerance-secret"
NOW = 1_764_000_000.0
BODY = json.dumps(
    [{"notificationId": "t-1", "contextId": "1", "event": "customer_changed", "resourceUri": None}]
).encode()


class RecordingQueue:
    def __init__(self):
        self.sent = []

    def send_batch(self, messages):
        self.sent.extend(messages)
        return []


def ingestor(**settings):
    queue, dlq = RecordingQueue(), RecordingQueue()
    config = IngestSettings(queue_url="q", dlq_url="d", secret_arn="arn", **settings)
    return Ingestor(config, secrets=lambda: [SECRET], queue=queue, dlq=dlq, clock=lambda: NOW), queue


def headers(timestamp_ms=None):
    result = {"x-vwd-signature-v1": sign(BODY, SECRET)}
    if timestamp_ms is not None:
        result["x-vwd-webhook-timestamp"] = str(timestamp_ms)
    return result


@pytest.mark.parametrize("skew", [0, 299, -299])
def test_timestamp_within_tolerance_is_accepted(skew):
    service, queue = ingestor(timestamp_tolerance_seconds=300)
    response = service.handle(BODY, headers(int((NOW + skew) * 1000)))
    assert response.status == 202
    assert len(queue.sent) == 1


@pytest.mark.parametrize("skew", [301, -301, -86_400])
def test_timestamp_outside_tolerance_is_refused(skew):
    service, queue = ingestor(timestamp_tolerance_seconds=300)
    response = service.handle(BODY, headers(int((NOW + skew) * 1000)))
    assert response.status == 401
    assert "tolerance is 300 s" in response.body["message"]
    assert queue.sent == []


@pytest.mark.parametrize("value", [None, "", "yesterday", "-5", "1.5e12"])
def test_missing_or_malformed_timestamp_is_refused_when_tolerance_is_on(value):
    service, queue = ingestor(timestamp_tolerance_seconds=300)
    hdrs = headers()
    if value is not None:
        hdrs["x-vwd-webhook-timestamp"] = value
    response = service.handle(BODY, hdrs)
    assert response.status == 401
    assert queue.sent == []


def test_timestamp_is_ignored_when_tolerance_is_off():
    service, _ = ingestor(timestamp_tolerance_seconds=0)
    assert service.handle(BODY, headers(1)).status == 202


def test_replayed_delivery_with_a_valid_signature_but_old_timestamp_is_refused():
    service, queue = ingestor(timestamp_tolerance_seconds=60)
    old = headers(int((NOW - 3600) * 1000))
    assert service.handle(BODY, old).status == 401
    assert queue.sent == []


DISPATCHER_IPS = "18.202.121.26,34.242.104.102,54.220.26.45"


@pytest.mark.parametrize("ip", ["18.202.121.26", "34.242.104.102", "54.220.26.45"])
def test_dispatcher_addresses_are_allowed(ip):
    service, _ = ingestor(allowed_networks=networks(DISPATCHER_IPS))
    assert service.handle(BODY, headers(), source_ip=ip).status == 202


@pytest.mark.parametrize("ip", ["18.202.121.27", "10.0.0.1", "::1", "", None, "not-an-ip"])
def test_other_addresses_are_forbidden(ip):
    service, queue = ingestor(allowed_networks=networks(DISPATCHER_IPS))
    response = service.handle(BODY, headers(), source_ip=ip)
    assert response.status == 403
    assert response.counts == {"RequestsForbidden": 1}
    assert queue.sent == []


def test_cidr_ranges_and_an_empty_list():
    assert networks("") == ()
    service, _ = ingestor(allowed_networks=networks("192.0.2.0/24, 2001:db8::/32"))
    assert service.handle(BODY, headers(), source_ip="192.0.2.77").status == 202
    assert service.handle(BODY, headers(), source_ip="2001:db8::5").status == 202


def test_bad_allow_list_refuses_to_start():
    with pytest.raises(ConfigurationError, match="ALLOWED_SOURCE_IPS"):
        IngestSettings.from_env(
            {"QUEUE_URL": "q", "DLQ_URL": "d", "WEBHOOK_SECRET_ARN": "a", "ALLOWED_SOURCE_IPS": "1.2.3.4/99"}
        )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALLOWED_RESOURCE_HOSTS", "evil.example/v1"),
        ("ALLOWED_SALESORDER_HOSTS", "orders.example.com:444"),
        ("ALLOWED_JOURNALTX_HOSTS", "https://journal.example.com"),
        ("LEGACY_SALESORDER_RULE", "v2"),
    ],
)
def test_bad_resource_rules_refuse_to_start(variable, value):
    with pytest.raises(ConfigurationError, match=variable):
        IngestSettings.from_env(
            {"QUEUE_URL": "q", "DLQ_URL": "d", "WEBHOOK_SECRET_ARN": "a", variable: value}
        )


def test_the_resource_rules_come_from_the_environment():
    settings = IngestSettings.from_env(
        {
            "QUEUE_URL": "q",
            "DLQ_URL": "d",
            "WEBHOOK_SECRET_ARN": "a",
            "ALLOWED_SALESORDER_HOSTS": "orders.example.com",
            "LEGACY_SALESORDER_RULE": "financials",
        }
    )

    assert settings.rules.services_of("orders.example.com") == ["salesorders"]
    assert settings.rules.legacy_salesorder == "financials"
