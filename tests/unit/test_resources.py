"""Resource URIs → (service, path): every service's forms, the legacy rules, and what each refuses."""

from __future__ import annotations

import pytest

from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.resources import (
    MAX_PATH_LENGTH,
    Resource,
    ResourcePathError,
    ResourceRules,
    check_path,
)
from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS

RULES = ResourceRules()
KEEP_SALESORDERS = ResourceRules.from_env({"LEGACY_SALESORDER_RULE": "financials"})
FIN = "https://api.finance.visma.net"
LEGACY = "https://integration.visma.net/API/controller/api/v1"
SO = "https://salesorder.visma.net"
JTX = "https://journaltx.visma.net"
CYRILLIC_I = "\u0456"


@pytest.mark.parametrize(
    ("uri", "resource"),
    [
        (f"{LEGACY}/customer/1286", (FINANCIALS, "/v1/customer/1286")),
        ("https://integration.visma.net/api/controller/api/v1/customer/1", (FINANCIALS, "/v1/customer/1")),
        ("https://integration.visma.net/API/Controller/API/V1/customer/1", (FINANCIALS, "/v1/customer/1")),
        (
            "https://INTEGRATION.visma.net/API/controller/api/v1/customer/10001",
            (FINANCIALS, "/v1/customer/10001"),
        ),
        (f"{FIN}/v1/supplierInvoice/INV/000452", (FINANCIALS, "/v1/supplierInvoice/INV/000452")),
        (f"{FIN}/V1/customer/10002", (FINANCIALS, "/v1/customer/10002")),
        (f"{FIN}/v2/journaltransaction/JT-0001", (FINANCIALS, "/v2/journaltransaction/JT-0001")),
        (f"{FIN}/V2/customer/10002", (FINANCIALS, "/v2/customer/10002")),
        ("HTTPS://api.finance.visma.net:443/v1/customer/10002", (FINANCIALS, "/v1/customer/10002")),
        (f"  {FIN}/v1/customer/10002/  ", (FINANCIALS, "/v1/customer/10002")),
        (f"{FIN}/v1/inventory/BOLT%20M8", (FINANCIALS, "/v1/inventory/BOLT%20M8")),
        (f"{FIN}/v1/inventory/%C3%85LESUND-1", (FINANCIALS, "/v1/inventory/%C3%85LESUND-1")),
        (f"{FIN}/v1/customerinvoice/INV-000452.v2_~x", (FINANCIALS, "/v1/customerinvoice/INV-000452.v2_~x")),
        (f"{SO}/api/v3/SalesOrders/SO/1286", (SALESORDERS, "/api/v3/SalesOrders/SO/1286")),
        (f"{SO}/API/V3/SalesOrders/SO/1286", (SALESORDERS, "/api/v3/SalesOrders/SO/1286")),
        (
            "https://SALESORDER.visma.net/api/v3/SalesOrders/IN/0000042",
            (SALESORDERS, "/api/v3/SalesOrders/IN/0000042"),
        ),
        (
            f"{JTX}/api/v1/journaltransactions/GL/000123",
            (JOURNAL_TRANSACTIONS, "/api/v1/journaltransactions/GL/000123"),
        ),
        (f"{JTX}/api/v2/journaltransaction/JT1", (JOURNAL_TRANSACTIONS, "/api/v2/journaltransaction/JT1")),
    ],
)
def test_absolute_uris_map_onto_their_service(uri, resource):
    assert RULES.resolve(uri) == Resource(*resource)


def test_path_keeps_the_case_of_entity_and_id():
    assert RULES.resolve(f"{LEGACY}/SupplierInvoice/So-1286") == Resource(
        FINANCIALS, "/v1/SupplierInvoice/So-1286"
    )


@pytest.mark.parametrize(
    ("relative", "path"),
    [
        ("api/v1/customer/SO/1286", "/v1/customer/SO/1286"),
        ("/api/v1/customer/SO/1286", "/v1/customer/SO/1286"),
        ("API/V1/customer/1286", "/v1/customer/1286"),
        ("controller/api/v1/customer/1", "/v1/customer/1"),
        ("API/controller/api/v1/customer/1", "/v1/customer/1"),
        ("v1/customer/1", "/v1/customer/1"),
        ("v2/journaltransaction/JT-1", "/v2/journaltransaction/JT-1"),
        (" api/v1/customer/1 ", "/v1/customer/1"),
    ],
)
def test_relative_forms_map_onto_financials(relative, path):
    assert RULES.resolve_relative(relative) == Resource(FINANCIALS, path)


# --- legacy sales orders ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        (f"{FIN}/v1/salesorder/SO/1286", "/api/v3/SalesOrders/SO/1286"),
        (f"{FIN}/v2/salesorder/IN/77", "/api/v3/SalesOrders/IN/77"),
        (f"{FIN}/V1/SalesOrder/SO/1286", "/api/v3/SalesOrders/SO/1286"),
        (f"{LEGACY}/salesorder/SO/1286", "/api/v3/SalesOrders/SO/1286"),
        (f"{LEGACY}/salesorder/1286", "/api/v3/SalesOrders/SO/1286"),  # Financials' endpoint for type SO
    ],
)
def test_legacy_sales_orders_are_fetched_from_v3_by_default(uri, path):
    assert RULES.resolve(uri) == Resource(SALESORDERS, path)


def test_relative_legacy_sales_orders_are_fetched_from_v3_by_default():
    assert RULES.resolve_relative("api/v1/salesorder/SO/1286") == Resource(
        SALESORDERS, "/api/v3/SalesOrders/SO/1286"
    )


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        (f"{FIN}/v1/salesorder/SO/1286", "/v1/salesorder/SO/1286"),
        (f"{FIN}/v2/salesorder/SO/1286", "/v2/salesorder/SO/1286"),
        (f"{LEGACY}/salesorder/1286", "/v1/salesorder/1286"),
        (f"{LEGACY}/salesorder/SO/1286/lines/3", "/v1/salesorder/SO/1286/lines/3"),
    ],
)
def test_the_financials_rule_keeps_legacy_sales_orders_on_financials(uri, path):
    assert KEEP_SALESORDERS.resolve(uri) == Resource(FINANCIALS, path)


def test_a_deeper_legacy_sales_order_path_has_no_v3_equivalent():
    with pytest.raises(
        ResourcePathError, match=r"no SalesOrders V3 equivalent.*LEGACY_SALESORDER_RULE=financials"
    ):
        RULES.resolve(f"{LEGACY}/salesorder/SO/1286/lines/3")


def test_salesorder_basic_and_other_entities_are_not_sales_orders():
    assert RULES.resolve(f"{FIN}/v1/salesorderbasic/SO/1") == Resource(FINANCIALS, "/v1/salesorderbasic/SO/1")


@pytest.mark.parametrize("rule", ["v2", "V3 ", "sales", "true"])
def test_an_unknown_legacy_rule_refuses_to_start(rule):
    if rule.strip().lower() == "v3":
        assert ResourceRules.from_env({"LEGACY_SALESORDER_RULE": rule}) == RULES
        return
    with pytest.raises(ConfigurationError, match="LEGACY_SALESORDER_RULE"):
        ResourceRules.from_env({"LEGACY_SALESORDER_RULE": rule})


# --- refusals, for every service -------------------------------------------------------------------

# (scheme://host, prefix) of each service: every SSRF refusal is tried on each.
SERVICE_BASES = [(FIN, "/v1/"), (FIN, "/v2/"), (SO, "/api/v3/"), (JTX, "/api/v1/")]


def hostile_uris(base: str, prefix: str) -> list[tuple[str, str]]:
    host = base.removeprefix("https://")
    good = f"{prefix}customer/1"
    return [
        # look-alikes of the host, and addresses that are not it
        (f"https://{host}.evil.example{good}", "not allow-listed"),
        (f"https://{host}.{good}", "not allow-listed"),
        (f"https://evil-{host}{good}", "not allow-listed"),
        (f"https://{host.replace('i', CYRILLIC_I, 1)}{good}", "not allow-listed"),
        (f"https://169.254.169.254{good}", "not allow-listed"),
        (f"https://[::ffff:a9fe:a9fe]{good}", "not allow-listed"),
        # userinfo, ports and separators in the authority
        (f"https://{host}@evil.example{good}", "credentials"),
        (f"https://evil.example@{host}{good}", "credentials"),
        (f"https://user:pw@{host}{good}", "credentials"),
        (f"https://{host}\\@evil.example{good}", "credentials"),
        (f"https://{host}:444{good}", "credentials or a port"),
        (f"https://{host}:8443{good}", "credentials or a port"),
        (f"https://{host}:http{good}", "not a valid URL"),
        (f"https://[{host}{good}", "not a valid URL"),
        # other schemes
        (f"http://{host}{good}", "is not https"),
        (f"ftp://{host}{good}", "is not https"),
        (f"gopher://{host}:443/_{good}", "is not https"),
        (f"//{host}{good}", "is not https"),
        (good, "is not https"),
        # queries, fragments, dot segments, escapes
        (f"https://{host}{good}?expand=all", "query or fragment"),
        (f"https://{host}{good}#top", "query or fragment"),
        (f"https://{host}{prefix}customer/../../admin/1", "'..' segment"),
        (f"https://{host}{prefix}customer/./1", "'.' or '..' segment"),
        (f"https://{host}{prefix}customer/0..", "'..' segment"),
        (f"https://{host}{prefix}customer/a..b", "'..' segment"),
        (f"https://{host}{prefix}customer//1", "empty"),
        (f"https://{host}{prefix}customer/%2e%2e/1", "encoded separator"),
        (f"https://{host}{prefix}customer/a%2Fb", "encoded separator"),
        (f"https://{host}{prefix}customer/a%5cb", "encoded separator"),
        (f"https://{host}{prefix}customer/a%00", "encoded separator"),
        (f"https://{host}{prefix}customer/%252e%252e", "percent sign"),
        (f"https://{host}{prefix}customer/%c0%ae%c0%ae", "outside the resource pattern"),
        (f"https://{host}{prefix}customer/%e2%80%ae1", "outside the resource pattern"),
        (f"https://{host}{prefix}customer/%ff", "outside the resource pattern"),
        (f"https://{host}{prefix}customer/1;drop", "outside the resource pattern"),
        # lengths and segment counts
        (f"https://{host}{prefix}customer", "<entity>/<id>"),
        (f"https://{host}{prefix}customer/" + "/".join("abcdefg"), "<entity>/<id>"),
        (f"https://{host}{prefix}customer/" + "a" * 121, "outside the resource pattern"),
        (f"https://{host}{prefix}customer/" + "a" * MAX_PATH_LENGTH, "too long"),
        (f"https://{host}{prefix}1customer/1", "not a plain name"),
        (f"https://{host}{prefix}_customer/1", "not a plain name"),
    ]


@pytest.mark.parametrize(
    ("uri", "reason"),
    [case for base, prefix in SERVICE_BASES for case in hostile_uris(base, prefix)],
)
def test_every_refusal_holds_for_every_service(uri, reason):
    with pytest.raises(ResourcePathError, match=reason):
        RULES.resolve(uri)


@pytest.mark.parametrize(
    "uri",
    [
        # a host serves its own service's paths only
        f"{FIN}/api/v3/SalesOrders/SO/1",
        f"{FIN}/API/controller/api/v1/customer/1",
        f"{FIN}/v3/customer/1",
        f"{SO}/v1/customer/1",
        f"{SO}/api/v1/SalesOrders/SO/1",
        f"{SO}/api/v3",
        f"{JTX}/v1/customer/1",
        f"{JTX}/api/vx/journaltransaction/1",
        # the legacy host serves its legacy form only
        "https://integration.visma.net/v1/customer/1",
        "https://integration.visma.net/api/v1/customer/1",
        "https://integration.visma.net/API/controller/api/v2/customer/1",
    ],
)
def test_a_path_outside_its_hosts_service_is_refused(uri):
    with pytest.raises(ResourcePathError, match="matches no"):
        RULES.resolve(uri)


@pytest.mark.parametrize(
    "uri", ["", "javascript:alert(1)", "file:///etc/passwd", "https://", "https:///v1/customer/1"]
)
def test_uris_that_are_not_resource_urls(uri):
    with pytest.raises(ResourcePathError):
        RULES.resolve(uri)


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("https://evil.example/api/v1/customer/1", "is absolute"),
        ("//evil.example/api/v1/x/1", "is absolute"),
        (" //evil.example/api/v1/x/1", "is absolute"),
        ("api/v1/x/1#f", "query or fragment"),
        ("api/v1/x/1?y=1", "query or fragment"),
        ("api/v2/x/1", "not under api/v1"),
        ("api/v3/SalesOrders/SO/1", "not under api/v1"),
        ("x/v1/a/1", "not under api/v1"),
        ("api/v1/../../etc/passwd", "'..' segment"),
        ("api/v1/customer/%2e%2e", "encoded separator"),
    ],
)
def test_relative_forms_that_are_refused(relative, reason):
    with pytest.raises(ResourcePathError, match=reason):
        RULES.resolve_relative(relative)


# --- check_path: what the client may request on each service ---------------------------------------


@pytest.mark.parametrize(
    ("service", "path", "checked"),
    [
        (FINANCIALS, "/v1/customer/1", "/v1/customer/1"),
        (FINANCIALS, "/V2/journaltransaction/1/", "/v2/journaltransaction/1"),
        (SALESORDERS, "/API/v3/SalesOrders/SO/1", "/api/v3/SalesOrders/SO/1"),
        (JOURNAL_TRANSACTIONS, "/api/v12/journal/1", "/api/v12/journal/1"),
        (FINANCIALS, "/v1/customer/" + "/".join(["a" * 60] * 6), "/v1/customer/" + "/".join(["a" * 60] * 6)),
    ],
)
def test_check_path_accepts_each_services_paths(service, path, checked):
    assert check_path(service, path) == checked


@pytest.mark.parametrize(
    ("service", "path"),
    [
        (FINANCIALS, "/api/v3/SalesOrders/SO/1"),
        (SALESORDERS, "/v1/customer/1"),
        (JOURNAL_TRANSACTIONS, "/v2/journaltransaction/1"),
        ("crm", "/v1/customer/1"),
        (SALESORDERS, "/api/v3/SalesOrders/SO/../../../v1/x"),
        (SALESORDERS, "/api/v3/SalesOrders/SO/" + "/".join("abcdef")),
    ],
)
def test_check_path_refuses_other_services_paths(service, path):
    with pytest.raises(ResourcePathError):
        check_path(service, path)


# --- configuration -----------------------------------------------------------------------------------


def test_defaults_when_nothing_is_configured():
    assert ResourceRules.from_env({}) == RULES
    assert ResourceRules.from_env({"ALLOWED_RESOURCE_HOSTS": "", "LEGACY_SALESORDER_RULE": ""}) == RULES
    assert RULES.services_of("api.finance.visma.net") == [FINANCIALS]
    assert RULES.services_of("integration.visma.net") == [FINANCIALS]
    assert RULES.services_of("salesorder.visma.net") == [SALESORDERS]
    assert RULES.services_of("journaltx.visma.net") == [JOURNAL_TRANSACTIONS]


def test_the_templates_host_list_changes_nothing():
    rules = ResourceRules.from_env({"ALLOWED_RESOURCE_HOSTS": "integration.visma.net,api.finance.visma.net"})

    assert rules == RULES


def test_configured_hosts_are_added_to_their_service():
    rules = ResourceRules.from_env(
        {
            "ALLOWED_RESOURCE_HOSTS": " ERP-Sandbox.example.com , ",
            "ALLOWED_SALESORDER_HOSTS": "orders.example.com",
            "ALLOWED_JOURNALTX_HOSTS": "journal.example.com",
        }
    )

    assert rules.resolve("https://erp-sandbox.example.com/v1/customer/1") == Resource(
        FINANCIALS, "/v1/customer/1"
    )
    assert rules.resolve(f"{LEGACY}/customer/1") == Resource(FINANCIALS, "/v1/customer/1")
    assert rules.resolve("https://orders.example.com/api/v3/SalesOrders/SO/1").service == SALESORDERS
    assert rules.resolve("https://journal.example.com/api/v1/journal/1").service == JOURNAL_TRANSACTIONS
    # each extra host serves its own service only
    with pytest.raises(ResourcePathError, match="matches no resource pattern of salesorders"):
        rules.resolve("https://orders.example.com/v1/customer/1")
    with pytest.raises(ResourcePathError, match="not allow-listed"):
        RULES.resolve("https://erp-sandbox.example.com/v1/customer/1")


def test_a_host_shared_by_services_goes_to_the_first_whose_pattern_matches():
    shared = "visma.test"
    rules = ResourceRules.from_env(
        {
            name: shared
            for name in ("ALLOWED_RESOURCE_HOSTS", "ALLOWED_SALESORDER_HOSTS", "ALLOWED_JOURNALTX_HOSTS")
        }
    )

    assert rules.services_of(shared) == [FINANCIALS, SALESORDERS, JOURNAL_TRANSACTIONS]
    assert rules.resolve(f"https://{shared}/v1/customer/1").service == FINANCIALS
    assert rules.resolve(f"https://{shared}/api/v3/SalesOrders/SO/1").service == SALESORDERS
    assert rules.resolve(f"https://{shared}/api/v1/journal/1").service == JOURNAL_TRANSACTIONS


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALLOWED_RESOURCE_HOSTS", "evil.example/v1"),
        ("ALLOWED_SALESORDER_HOSTS", "orders.example.com:8443"),
        ("ALLOWED_JOURNALTX_HOSTS", "user@journal.example.com"),
        ("ALLOWED_RESOURCE_HOSTS", "https://api.example.com"),
        ("ALLOWED_RESOURCE_HOSTS", "a..b"),
    ],
)
def test_a_configured_host_that_is_not_a_host_name_refuses_to_start(variable, value):
    with pytest.raises(ConfigurationError, match=variable):
        ResourceRules.from_env({variable: value})


def test_rewrite_rules_are_configurable():
    rules = ResourceRules(
        hosts=((FINANCIALS, frozenset({"erp.example.com"})),),
        rewrites=(("erp.example.com", "/finance/api/v1/"),),
    )

    assert rules.resolve("https://erp.example.com/Finance/API/v1/project/P1") == Resource(
        FINANCIALS, "/v1/project/P1"
    )
    with pytest.raises(ResourcePathError, match="no rewrite rule"):
        rules.resolve("https://erp.example.com/v1/project/P1")
