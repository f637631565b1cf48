"""Visma's API services: where each lives, which resources it serves, how it is reached.

Visma.net ERP is several services on their own hosts, with the same Visma Connect
tokens but scopes of their own:

* ``financials``: the Financials (ERP) API, ``https://api.finance.visma.net``, paths under
  ``/v1/`` and ``/v2/``. The legacy Integrations host ``integration.visma.net``
  (``/API/controller/api/v1/...``) is mapped onto it and never requested as given.
* ``salesorders``: the SalesOrders API (V3), ``https://salesorder.visma.net``, paths under
  ``/api/v3/`` (``/api/v3/SalesOrders/{orderType}/{orderNbr}``).
* ``journaltransactions``: the Journal Transaction API, ``https://journaltx.visma.net``,
  paths under ``/api/v{n}/``.

A notification's ``resourceUri`` names a host; the host only chooses the service (and
must be one of the service's allow-listed hosts): requests always go to the service's
*configured* base URL, so no credential ever goes to a host taken from a payload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

FINANCIALS = "financials"
SALESORDERS = "salesorders"
JOURNAL_TRANSACTIONS = "journaltransactions"
FEEDBACK_SERVICE = FINANCIALS  # WebhookNotificationFeedback lives on the Financials API


@dataclass(frozen=True)
class Service:
    """One Visma API service: its default base URL, allow-listed hosts and path prefixes."""

    name: str
    default_base_url: str
    hosts: frozenset[str]  # hosts a resourceUri of this service may name
    prefixes: re.Pattern[str]  # the paths the service serves (matched case-insensitively)


SERVICES: Mapping[str, Service] = {
    s.name: s
    for s in (
        Service(
            FINANCIALS,
            "https://api.finance.visma.net",
            frozenset({"api.finance.visma.net", "integration.visma.net"}),
            re.compile(r"^/v[12]/", re.IGNORECASE),
        ),
        Service(
            SALESORDERS,
            "https://salesorder.visma.net",
            frozenset({"salesorder.visma.net"}),
            re.compile(r"^/api/v3/", re.IGNORECASE),
        ),
        Service(
            JOURNAL_TRANSACTIONS,
            "https://journaltx.visma.net",
            frozenset({"journaltx.visma.net"}),
            re.compile(r"^/api/v[0-9]+/", re.IGNORECASE),
        ),
    )
}


@dataclass(frozen=True)
class Endpoint:
    """Where one service is reached in this deployment, and the scopes its token needs."""

    base_url: str
    scope: str | None = None  # None: the client's default scope


@dataclass(frozen=True)
class Endpoints:
    """The configured endpoint of every service (defaults: Visma's production hosts)."""

    by_service: Mapping[str, Endpoint] = field(
        default_factory=lambda: {name: Endpoint(s.default_base_url) for name, s in SERVICES.items()}
    )

    def __getitem__(self, service: str) -> Endpoint:
        try:
            return self.by_service[service]
        except KeyError:
            raise ValueError(f"unknown Visma service {service!r}") from None
