"""The Visma API services the sandbox serves, each on its own port as each is its own host in Visma.

For each service: which paths are its API, which of them name one resource (and so can
be fetched, written and deleted), what a document it has no fixture for looks like,
and the events its webhook publisher fires for a change or a deletion.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS, SERVICES

FINANCIAL_PUBLISHER = "Visma Net Financial"
SALESORDER_PUBLISHER = "visma.net.erp.salesorderservice"
SYNTHETIC_MODIFIED = "2025-01-01T00:00:00.000"  # fixed, so a synthesised document never looks changed

# Display names of the "Visma Net Financial" events that differ from "<Entity> Changed".
_FINANCIAL_ENTITIES = {
    "customer": "Customer",
    "supplier": "Supplier",
    "inventory": "Inventory Item",
    "salesorder": "Sales Order",
    "shipment": "Shipment",
    "account": "Account",
    "customerinvoice": "AR Invoice",
    "supplierinvoice": "AP Invoice",
    "project": "Project",
    "employee": "Employee",
    "journaltransaction": "Journal Transaction",
}


@dataclass(frozen=True)
class SandboxService:
    """One service: its API paths, its resource paths, its synthesised documents and its events."""

    name: str
    api: re.Pattern[str]  # every path of its API: the client's own prefixes (domain.services.SERVICES)
    resource: re.Pattern[str]  # the paths that name one resource; groups after the first are its ids
    publisher: str
    synthesise: Callable[[re.Match[str]], dict[str, Any]]
    event: Callable[[str, str], str]  # (entity, "changed"|"created"|"deleted") → event name
    collection: re.Pattern[str]  # its list endpoints; each group names what a listed resource's matches

    @property
    def public_base_url(self) -> str:
        """Visma's own host for the service: what a notification's ``resourceUri`` names."""
        return SERVICES[self.name].default_base_url

    def match(self, path: str) -> re.Match[str] | None:
        """The resource this path names, or None; an id starting with ``missing`` never exists."""
        found = self.resource.match(path)
        if found is None:
            return None
        ids = [s for g in found.groups()[1:] for s in g.split("/")]
        return None if any(s.lower().startswith("missing") for s in ids) else found


def _financial_document(found: re.Match[str]) -> dict[str, Any]:
    entity, ids = found.group(2), found.group(3)
    return {"id": ids, "entity": entity, "synthetic": True}


def _financial_event(entity: str, change: str) -> str:
    name = _FINANCIAL_ENTITIES.get(entity.lower(), entity[:1].upper() + entity[1:])
    return f"{name} {change.capitalize()}"


def _salesorder_document(found: re.Match[str]) -> dict[str, Any]:
    order_type, order_no = found.group(2), found.group(3)
    return {
        "orderType": order_type,
        "orderNo": order_no,
        "status": "Open",
        "customer": {"id": "10001"},
        "currency": "NOK",
        "lines": [{"lineNumber": 1, "inventoryId": "BOLT-M8", "quantity": 1.0, "unitPrice": 10.0}],
        "lastModifiedDateTime": SYNTHETIC_MODIFIED,
        "timeStamp": "AAAAAAAAAAE=",
        "synthetic": True,
    }


def _salesorder_event(entity: str, change: str) -> str:
    return "SALESORDER_" + {"changed": "UPDATED"}.get(change, change.upper())


def _journal_document(found: re.Match[str]) -> dict[str, Any]:
    return {
        "module": "GL",
        "batchNumber": found.group(2),
        "status": "Unposted",
        "transactionDate": "2025-01-01",
        "financialPeriod": "202501",
        "currencyId": "NOK",
        "lines": [
            {"lineNumber": 1, "accountNumber": "1920", "debitAmount": 100.0, "creditAmount": 0.0},
            {"lineNumber": 2, "accountNumber": "3000", "debitAmount": 0.0, "creditAmount": 100.0},
        ],
        "lastModifiedDateTime": SYNTHETIC_MODIFIED,
        "timeStamp": "AAAAAAAAAAE=",
        "synthetic": True,
    }


def _journal_event(entity: str, change: str) -> str:
    return _financial_event("journaltransaction", change)


SANDBOX_SERVICES: dict[str, SandboxService] = {
    s.name: s
    for s in (
        SandboxService(
            FINANCIALS,
            SERVICES[FINANCIALS].prefixes,
            re.compile(r"^/(v[12])/([A-Za-z]+)/([^/]+(?:/[^/]+)*)$"),
            FINANCIAL_PUBLISHER,
            _financial_document,
            _financial_event,
            re.compile(r"^/(v[12])/([A-Za-z]+)$"),
        ),
        SandboxService(
            SALESORDERS,
            SERVICES[SALESORDERS].prefixes,
            re.compile(r"^/api/v3/(SalesOrders)/([^/]+)/([^/]+)$", re.IGNORECASE),
            SALESORDER_PUBLISHER,
            _salesorder_document,
            _salesorder_event,
            re.compile(r"^/api/v3/(SalesOrders)(?:/([^/]+))?$", re.IGNORECASE),
        ),
        SandboxService(
            JOURNAL_TRANSACTIONS,
            SERVICES[JOURNAL_TRANSACTIONS].prefixes,
            re.compile(r"^/api/v1/(JournalTransactions)/([^/]+)$", re.IGNORECASE),
            FINANCIAL_PUBLISHER,
            _journal_document,
            _journal_event,
            re.compile(r"^/api/v1/(JournalTransactions)$", re.IGNORECASE),
        ),
    )
}


def service(name: str) -> SandboxService:
    try:
        return SANDBOX_SERVICES[name]
    except KeyError:
        raise ValueError(f"unknown service {name!r}: one of {sorted(SANDBOX_SERVICES)}") from None


def entity_of(service_: SandboxService, found: re.Match[str]) -> str:
    """The entity a resource path names (``customer``, ``salesorder``, ``journaltransaction``)."""
    if service_.name == FINANCIALS:
        return found.group(2).lower()
    return "salesorder" if service_.name == SALESORDERS else "journaltransaction"
