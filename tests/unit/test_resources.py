"""Resource URIs → paths under the configured API base: the rewrite rules and what they refuse."""

from __future__ import annotations

import pytest

from visma_webhooks.domain.resources import (
    DEFAULT_ALLOWED_HOSTS,
    MAX_PATH_LENGTH,
    ResourcePathError,
    ResourceRules,
    check_path,
)

RULES = ResourceRules()


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("https://integration.visma.net/API/controller/api/v1/salesorder/1286", "/v1/salesorder/1286"),
        ("https://integration.visma.net/api/controller/api/v1/salesorder/1286", "/v1/salesorder/1286"),
        ("https://integration.visma.net/API/Controller/API/V1/salesorder/1286", "/v1/salesorder/1286"),
        ("https://INTEGRATION.visma.net/API/controller/api/v1/customer/10001", "/v1/customer/10001"),
        ("https://api.finance.visma.net/v1/salesorder/SO/1286", "/v1/salesorder/SO/1286"),
        ("https://api.finance.visma.net/V1/customer/10002", "/v1/customer/10002"),
        ("HTTPS://api.finance.visma.net:443/v1/customer/10002", "/v1/customer/10002"),
        ("  https://api.finance.visma.net/v1/customer/10002/  ", "/v1/customer/10002"),
        ("https://api.finance.visma.net/v1/inventory/BOLT%20M8", "/v1/inventory/BOLT%20M8"),
        ("https://api.finance.visma.net/v1/inventory/%C3%85LESUND-1", "/v1/inventory/%C3%85LESUND-1"),
        (
            "https://api.finance.visma.net/v1/customerinvoice/INV-000452.v2_~x",
            "/v1/customerinvoice/INV-000452.v2_~x",
        ),
    ],
)
def test_absolute_uris_on_both_hosts_map_to_v1(uri, path):
    assert RULES.resource_path(uri) == path


def test_path_keeps_the_case_of_entity_and_id():
    uri = "https://integration.visma.net/API/controller/api/v1/SalesOrder/So-1286"

    assert RULES.resource_path(uri) == "/v1/SalesOrder/So-1286"


@pytest.mark.parametrize(
    ("relative", "path"),
    [
        ("api/v1/salesorder/SO/1286", "/v1/salesorder/SO/1286"),
        ("/api/v1/salesorder/SO/1286", "/v1/salesorder/SO/1286"),
        ("API/V1/salesorder/1286", "/v1/salesorder/1286"),
        ("controller/api/v1/customer/1", "/v1/customer/1"),
        ("API/controller/api/v1/customer/1", "/v1/customer/1"),
        ("v1/customer/1", "/v1/customer/1"),
        (" api/v1/customer/1 ", "/v1/customer/1"),
    ],
)
def test_relative_forms_map_to_v1(relative, path):
    assert RULES.relative_path(relative) == path


@pytest.mark.parametrize(
    "uri",
    [
        # a host's prefix applies to that host only
        "https://api.finance.visma.net/API/controller/api/v1/customer/1",
        "https://integration.visma.net/v1/customer/1",
        "https://integration.visma.net/api/v1/customer/1",
        # neither host, nor a look-alike of one
        "https://api.finance.visma.net.evil.example/v1/customer/1",
        "https://api.finance.visma.net./v1/customer/1",
        "https://evil-api.finance.visma.net/v1/customer/1",
        "https://xn--api-finance-visma-net.example/v1/customer/1",
        "https://api.finance.v\u0456sma.net/v1/customer/1",
        "https://169.254.169.254/v1/customer/1",
        "https://[::ffff:a9fe:a9fe]/v1/customer/1",
        # userinfo, ports and separators in the authority
        "https://api.finance.visma.net@evil.example/v1/customer/1",
        "https://evil.example@api.finance.visma.net/v1/customer/1",
        "https://api.finance.visma.net\\@evil.example/v1/customer/1",
        "https://api.finance.visma.net:444/v1/customer/1",
        "https://[api.finance.visma.net/v1/customer/1",
        # other schemes
        "http://api.finance.visma.net/v1/customer/1",
        "file:///etc/passwd",
        "gopher://api.finance.visma.net:443/_v1",
        "javascript:alert(1)",
        "",
    ],
)
def test_uris_that_are_refused(uri):
    with pytest.raises(ResourcePathError):
        RULES.resource_path(uri)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customer/../1",
        "/v1/customer/..",
        "/v1/customer//1",
        "/v1/customer/%2e%2e",
        "/v1/customer/%2E%2E",
        "/v1/customer/.%2e",
        "/v1/customer/a%2fb",
        "/v1/customer/a%5Cb",
        "/v1/customer/a%00",
        "/v1/customer/%252e%252e",
        "/v1/customer/%25",
        "/v1/customer/%c0%ae%c0%ae",
        "/v1/customer/%e2%80%ae1",
        "/v1/customer/%0d%0aHost:x",
        "/v1/customer/%ff",
        "/v1/customer/%zz",
        "/v1/customer/...",
        "/v1/customer/a\\b",
        "/v1/customer/1 2",
        "/v1/customer/\u202e1",
        "/v1/cust omer/1",
        "/v1/_customer/1",
        "/v2/customer/1",
        "/v1/customer",
        "/v1/customer/1/2/3/4/5/6/7",
        "/v1/customer/" + "a" * MAX_PATH_LENGTH,
        "/v1/customer/" + "a" * 121,
    ],
)
def test_paths_outside_the_resource_pattern(path):
    with pytest.raises(ResourcePathError):
        check_path(path)


def test_longest_accepted_shape():
    path = "/v1/customer/" + "/".join(["a" * 60] * 6)

    assert check_path(path) == path


@pytest.mark.parametrize(
    "relative",
    [
        "https://evil.example/api/v1/customer/1",
        "//evil.example/api/v1/x/1",
        "api/v1/x/1#f",
        "api/v2/x/1",
        "x/v1/a/1",
    ],
)
def test_relative_forms_that_are_refused(relative):
    with pytest.raises(ResourcePathError):
        RULES.relative_path(relative)


def test_default_hosts_when_nothing_is_configured():
    assert ResourceRules.from_hosts(None) == ResourceRules.from_hosts("") == RULES
    assert frozenset({"integration.visma.net", "api.finance.visma.net"}) == DEFAULT_ALLOWED_HOSTS


def test_configured_hosts_replace_the_defaults():
    rules = ResourceRules.from_hosts(" API.finance.visma.net , ")

    assert rules.allowed_hosts == {"api.finance.visma.net"}
    assert rules.resource_path("https://api.finance.visma.net/v1/customer/1") == "/v1/customer/1"
    with pytest.raises(ResourcePathError, match="not allow-listed"):
        rules.resource_path("https://integration.visma.net/API/controller/api/v1/customer/1")


def test_a_configured_host_of_its_own_serves_v1_paths():
    rules = ResourceRules.from_hosts("visma-sandbox.example.com,api.finance.visma.net")

    assert rules.resource_path("https://visma-sandbox.example.com/v1/customer/1") == "/v1/customer/1"
    with pytest.raises(ResourcePathError, match="no rewrite rule"):
        rules.resource_path("https://visma-sandbox.example.com/API/controller/api/v1/customer/1")


def test_rewrite_rules_are_configurable():
    rules = ResourceRules(
        allowed_hosts=frozenset({"erp.example.com"}), rewrites=(("erp.example.com", "/finance/api/v1/"),)
    )

    assert rules.resource_path("https://erp.example.com/Finance/API/v1/project/P1") == "/v1/project/P1"
    with pytest.raises(ResourcePathError):
        rules.resource_path("https://erp.example.com/v1/project/P1")
