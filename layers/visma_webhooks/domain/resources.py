"""Mapping a notification's resource URI onto the configured Visma API base.

All rewrite rules live here. A URI is reduced to a path such as ``/v1/salesorder/1286``;
the host it names is only checked against the allow-list, never used for a request.

A path segment may carry percent-escapes (``BOLT%20M8``), but only ones that decode to
printable UTF-8 text without a separator, ``%`` or a dot-only name: ``%2e``, ``%2f``,
``%5c``, ``%00``, double encoding (``%252e``) and overlong UTF-8 (``%c0%ae``) are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_ALLOWED_HOSTS = frozenset({"integration.visma.net", "api.finance.visma.net"})

# (host, path prefix) → the prefix it stands for under the current API (``/v1/``).
# The legacy Integrations API lived under /API/controller/api/v1/ on integration.visma.net.
DEFAULT_REWRITES: tuple[tuple[str, str], ...] = (
    ("integration.visma.net", "/api/controller/api/v1/"),
    ("api.finance.visma.net", "/v1/"),
)
# Relative forms seen in ``relativeResourceUri``: ``api/v1/salesorder/SO/1286`` and friends.
_RELATIVE_PREFIXES = ("/api/controller/api/v1/", "/controller/api/v1/", "/api/v1/", "/v1/")

_SEGMENT = re.compile(r"^[A-Za-z0-9._~\-%]{1,120}$")
_ENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_FORBIDDEN_ESCAPES = re.compile(r"%(2e|2f|5c|00|25)", re.IGNORECASE)
MAX_PATH_LENGTH = 512
MAX_SEGMENTS = 8


class ResourcePathError(ValueError):
    """The notification names a resource that must not be fetched."""


@dataclass(frozen=True)
class ResourceRules:
    """Allow-listed hosts and the prefix rewrites that map their URIs to ``/v1/...``."""

    allowed_hosts: frozenset[str] = DEFAULT_ALLOWED_HOSTS
    rewrites: tuple[tuple[str, str], ...] = field(default=DEFAULT_REWRITES)

    @classmethod
    def from_hosts(cls, hosts: str | None) -> ResourceRules:
        """Rules for a comma-separated host list (``ALLOWED_RESOURCE_HOSTS``).

        A listed host without a default rewrite serves the current API: ``/v1/...`` as is.
        """
        if not hosts:
            return cls()
        allowed = frozenset(h.strip().lower() for h in hosts.split(",") if h.strip())
        known = {host for host, _ in DEFAULT_REWRITES}
        extra = tuple((host, "/v1/") for host in sorted(allowed - known))
        return cls(allowed_hosts=allowed, rewrites=DEFAULT_REWRITES + extra)

    def resource_path(self, uri: str) -> str:
        """Map an absolute URI from an allow-listed host to ``/v1/...``."""
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
        if host not in self.allowed_hosts:
            raise ResourcePathError(f"resource host {host or '(none)'!r} is not allow-listed")
        if parts.query or parts.fragment:
            raise ResourcePathError("resource URI has a query or fragment")
        lowered = parts.path.lower()
        for rule_host, prefix in self.rewrites:
            if rule_host == host and lowered.startswith(prefix):
                return check_path("/v1/" + parts.path[len(prefix) :])
        raise ResourcePathError(f"resource path {parts.path!r} matches no rewrite rule for {host}")

    def relative_path(self, relative: str) -> str:
        """Map a ``relativeResourceUri`` (``api/v1/salesorder/SO/1286``) to ``/v1/...``."""
        if "://" in relative or relative.startswith("//"):
            raise ResourcePathError("relative resource URI is absolute")
        if "?" in relative or "#" in relative:
            raise ResourcePathError("resource URI has a query or fragment")
        path = "/" + relative.strip().lstrip("/")
        lowered = path.lower()
        for prefix in _RELATIVE_PREFIXES:
            if lowered.startswith(prefix):
                return check_path("/v1/" + path[len(prefix) :])
        raise ResourcePathError(f"relative resource path {relative!r} is not under api/v1")


def check_path(path: str) -> str:
    """Return ``path`` if it is a plain ``/v1/<entity>/<id>...`` path, else raise."""
    if len(path) > MAX_PATH_LENGTH:
        raise ResourcePathError("resource path is too long")
    if "\\" in path or _FORBIDDEN_ESCAPES.search(path):
        raise ResourcePathError("resource path contains an encoded separator, dot or percent sign")
    segments = path.rstrip("/").split("/")[1:]
    if len(segments) < 3 or len(segments) > MAX_SEGMENTS or segments[0] != "v1":
        raise ResourcePathError(f"resource path {path!r} is not /v1/<entity>/<id>")
    if any(seg in ("", ".", "..") for seg in segments):
        raise ResourcePathError("resource path contains an empty, '.' or '..' segment")
    if not _ENTITY.match(segments[1]):
        raise ResourcePathError(f"resource entity {segments[1]!r} is not a plain name")
    if not all(_SEGMENT.match(seg) and _plain_when_decoded(seg) for seg in segments[2:]):
        raise ResourcePathError("resource path contains characters outside the resource pattern")
    return "/" + "/".join(segments)


def _plain_when_decoded(segment: str) -> bool:
    """True if the percent-decoded segment is printable UTF-8 with no separator, ``%`` or dot-only name."""
    try:
        decoded = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return False
    return decoded.isprintable() and not any(c in decoded for c in "/\\%?#") and decoded.strip(".") != ""
