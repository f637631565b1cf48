"""Mapping a notification's resource URI onto (service, path): which Visma API, which path on it.

The host a URI names only chooses the service (it must be allow-listed for one, see
:mod:`visma_webhooks.domain.services`); the path is checked against that service's
pattern and kept, and requests go to the service's configured base URL. All rewrite
rules live here:

* ``https://api.finance.visma.net/v1/...`` and ``/v2/...`` → (``financials``, ``/v1/...``);
* the legacy ``https://integration.visma.net/API/controller/api/v1/...`` and the relative
  ``api/v1/...``, ``controller/api/v1/...``, ``v1/...``, ``v2/...`` forms → (``financials``,
  ``/v1/...``): the throttled legacy host is never requested;
* ``https://salesorder.visma.net/api/v3/SalesOrders/{type}/{nbr}`` → (``salesorders``, ...);
* ``https://journaltx.visma.net/api/v{n}/...`` → (``journaltransactions``, ...).

A host listed for several services (an extra host shared by a test stack) goes to the
first of financials, salesorders, journaltransactions whose pattern matches the path.

Legacy sales orders: Financials' SalesOrder V1/V2 endpoints reached end of life on
2026-03-31, so under ``LEGACY_SALESORDER_RULE=v3`` (the default) a Financials
``/v1/salesorder/{type}/{nbr}`` (or ``/v2/...``) becomes the SalesOrders V3
``/api/v3/SalesOrders/{type}/{nbr}``, and ``/v1/salesorder/{nbr}`` (Financials' endpoint
for type ``SO``) becomes ``/api/v3/SalesOrders/SO/{nbr}``; a deeper sales-order path has no
V3 equivalent and makes the item invalid. ``financials`` keeps the Financials path.

Every path, whatever the service, is ``<service prefix><entity>/<id>[/<id>...]``: at most
:data:`MAX_PATH_LENGTH` characters, an entity that is a plain name, one to six id
segments, none with ``..`` in it. An id segment may carry percent-escapes (``BOLT%20M8``),
but only ones that decode to printable UTF-8 text without a separator, ``%`` or a dot-only
name: ``%2e``, ``%2f``, ``%5c``, ``%00``, double encoding (``%252e``) and overlong UTF-8
(``%c0%ae``) are refused, as are userinfo, ports other than 443, schemes other than https,
queries and fragments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS, SERVICES

LEGACY_SALESORDER_V3 = "v3"
LEGACY_SALESORDER_FINANCIALS = "financials"
DEFAULT_SALESORDER_TYPE = "SO"  # what Financials' /v1/salesorder/{orderNbr} serves
# Extra allow-listed hosts per service, each a comma-separated list added to the service's own.
HOST_VARIABLES: Mapping[str, str] = {
    FINANCIALS: "ALLOWED_RESOURCE_HOSTS",
    SALESORDERS: "ALLOWED_SALESORDER_HOSTS",
    JOURNAL_TRANSACTIONS: "ALLOWED_JOURNALTX_HOSTS",
}
LEGACY_SALESORDER_VARIABLE = "LEGACY_SALESORDER_RULE"

DEFAULT_HOSTS: tuple[tuple[str, frozenset[str]], ...] = tuple((n, s.hosts) for n, s in SERVICES.items())
# (host, path prefix) → stands for Financials' ``/v1/``; a host with a rewrite serves only that form.
DEFAULT_REWRITES: tuple[tuple[str, str], ...] = (("integration.visma.net", "/api/controller/api/v1/"),)
# Relative forms seen in ``relativeResourceUri`` (legacy, so Financials) → the Financials prefix.
_RELATIVE_PREFIXES = (
    ("/api/controller/api/v1/", "/v1/"),
    ("/controller/api/v1/", "/v1/"),
    ("/api/v1/", "/v1/"),
    ("/v1/", "/v1/"),
    ("/v2/", "/v2/"),
)

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~\-%]{1,120}$")
_ENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_FORBIDDEN_ESCAPES = re.compile(r"%(2e|2f|5c|00|25)", re.IGNORECASE)
MAX_PATH_LENGTH = 512
MAX_IDS = 6  # id segments after the entity


class ResourcePathError(ValueError):
    """The notification names a resource that must not be fetched."""


@dataclass(frozen=True)
class Resource:
    """Which Visma API serves a resource, and its path there (``/v1/customer/10001``)."""

    service: str
    path: str


@dataclass(frozen=True)
class ResourceRules:
    """Allow-listed hosts per service, the legacy rewrites and the legacy sales-order rule."""

    hosts: tuple[tuple[str, frozenset[str]], ...] = DEFAULT_HOSTS  # (service, hosts), in resolution order
    rewrites: tuple[tuple[str, str], ...] = DEFAULT_REWRITES
    legacy_salesorder: str = LEGACY_SALESORDER_V3

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ResourceRules:
        """The rules the ingest and processor functions share (see :data:`HOST_VARIABLES`).

        Raises :class:`ConfigurationError` for a host that is not a plain host name, or a
        ``LEGACY_SALESORDER_RULE`` other than ``v3`` or ``financials``.
        """
        hosts = tuple(
            (service, allowed | _host_list(HOST_VARIABLES[service], env.get(HOST_VARIABLES[service], "")))
            for service, allowed in DEFAULT_HOSTS
        )
        rule = (env.get(LEGACY_SALESORDER_VARIABLE) or LEGACY_SALESORDER_V3).strip().lower()
        if rule not in (LEGACY_SALESORDER_V3, LEGACY_SALESORDER_FINANCIALS):
            raise ConfigurationError(
                f"{LEGACY_SALESORDER_VARIABLE} must be {LEGACY_SALESORDER_V3!r} or "
                f"{LEGACY_SALESORDER_FINANCIALS!r}, not {rule!r}"
            )
        return cls(hosts=hosts, legacy_salesorder=rule)

    def services_of(self, host: str) -> list[str]:
        """The services ``host`` is allow-listed for, in resolution order."""
        return [service for service, allowed in self.hosts if host in allowed]

    def resolve(self, uri: str) -> Resource:
        """Map an absolute ``resourceUri`` onto (service, path), or raise :class:`ResourcePathError`."""
        try:
            parts = urlsplit(uri.strip())
            port = parts.port
        except ValueError as exc:
            raise ResourcePathError(f"resource URI is not a valid URL: {exc}") from None
        if parts.scheme.lower() != "https":
            raise ResourcePathError(f"resource URI scheme {parts.scheme or '(none)'!r} is not https")
        host = (parts.hostname or "").lower()
        if parts.username or parts.password or port not in (None, 443):
            raise ResourcePathError("resource URI carries credentials or a port")
        services = self.services_of(host)
        if not services:
            raise ResourcePathError(f"resource host {host or '(none)'!r} is not allow-listed for any service")
        if parts.query or parts.fragment:
            raise ResourcePathError("resource URI has a query or fragment")
        path = self._rewritten(host, parts.path)
        for service in services:
            if SERVICES[service].prefixes.match(path):
                return self._legacy_salesorder(Resource(service, check_path(service, path)))
        raise ResourcePathError(
            f"resource path {parts.path[:100]!r} matches no resource pattern of {', '.join(services)} on {host}"
        )

    def resolve_relative(self, relative: str) -> Resource:
        """Map a ``relativeResourceUri`` (``api/v1/salesorder/SO/1286``) onto Financials."""
        if "://" in relative or relative.strip().startswith("//"):
            raise ResourcePathError("relative resource URI is absolute")
        if "?" in relative or "#" in relative:
            raise ResourcePathError("resource URI has a query or fragment")
        path = "/" + relative.strip().lstrip("/")
        lowered = path.lower()
        for prefix, target in _RELATIVE_PREFIXES:
            if lowered.startswith(prefix):
                resource = Resource(FINANCIALS, check_path(FINANCIALS, target + path[len(prefix) :]))
                return self._legacy_salesorder(resource)
        raise ResourcePathError(f"relative resource path {relative[:100]!r} is not under api/v1")

    def _rewritten(self, host: str, path: str) -> str:
        """``path`` as the service serves it: a legacy host's prefix becomes Financials' ``/v1/``."""
        prefixes = [prefix for rule_host, prefix in self.rewrites if rule_host == host]
        for prefix in prefixes:
            if path.lower().startswith(prefix):
                return "/v1/" + path[len(prefix) :]
        if prefixes:
            raise ResourcePathError(f"resource path {path[:100]!r} matches no rewrite rule for {host}")
        return path

    def _legacy_salesorder(self, resource: Resource) -> Resource:
        """A Financials sales order under the configured rule (see the module docstring)."""
        entity, *ids = resource.path.split("/")[2:]  # after "", "v1"
        if (
            resource.service != FINANCIALS
            or entity.lower() != "salesorder"
            or self.legacy_salesorder == LEGACY_SALESORDER_FINANCIALS
        ):
            return resource
        if len(ids) > 2:
            raise ResourcePathError(
                f"legacy sales-order path {resource.path[:100]!r} has no SalesOrders V3 equivalent "
                f"({LEGACY_SALESORDER_VARIABLE}=financials keeps it on Financials)"
            )
        order_type, order_nbr = ids if len(ids) == 2 else [DEFAULT_SALESORDER_TYPE, *ids]
        return Resource(SALESORDERS, f"/api/v3/SalesOrders/{order_type}/{order_nbr}")


def check_path(service: str, path: str) -> str:
    """``path`` with its service prefix in lower case, if it is a plain resource path of ``service``.

    Raises :class:`ResourcePathError` otherwise (and for a service that does not exist).
    """
    if service not in SERVICES:
        raise ResourcePathError(f"unknown Visma service {service!r}")
    if len(path) > MAX_PATH_LENGTH:
        raise ResourcePathError("resource path is too long")
    if "\\" in path or _FORBIDDEN_ESCAPES.search(path):
        raise ResourcePathError("resource path contains an encoded separator, dot or percent sign")
    prefix = SERVICES[service].prefixes.match(path)
    if prefix is None:
        raise ResourcePathError(f"resource path {path[:100]!r} is not a {service} path")
    segments = path[prefix.end() :].rstrip("/").split("/")
    if not 2 <= len(segments) <= MAX_IDS + 1:
        raise ResourcePathError(f"resource path {path[:100]!r} is not {prefix.group().lower()}<entity>/<id>")
    if any(seg in ("", ".") or ".." in seg for seg in segments):
        raise ResourcePathError("resource path contains an empty, '.' or '..' segment")
    if not _ENTITY.match(segments[0]):
        raise ResourcePathError(f"resource entity {segments[0][:64]!r} is not a plain name")
    if not all(_SEGMENT.match(seg) and _plain_when_decoded(seg) for seg in segments[1:]):
        raise ResourcePathError("resource path contains characters outside the resource pattern")
    return prefix.group().lower() + "/".join(segments)


def _host_list(variable: str, value: str) -> frozenset[str]:
    hosts = frozenset(h.strip().lower() for h in value.split(",") if h.strip())
    bad = sorted(h for h in hosts if not _HOST.match(h))
    if bad:
        raise ConfigurationError(f"{variable}: {bad[0]!r} is not a host name")
    return hosts


def _plain_when_decoded(segment: str) -> bool:
    """True if the percent-decoded segment is printable UTF-8 with no separator, ``%`` or dot-only name."""
    try:
        decoded = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return False
    return decoded.isprintable() and not any(c in decoded for c in "/\\%?#") and decoded.strip(".") != ""
