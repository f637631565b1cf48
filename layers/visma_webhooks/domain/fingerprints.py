"""Fingerprints of resources, to tell a real change from a notification about nothing new.

Visma notifies on every save, also when nothing that matters changed, and our own
write-backs come back as notifications. The fingerprint of a resource is a hash of its
canonical JSON without the fields that change on every save (``lastModifiedDateTime``,
``timeStamp`` and other ETag-like stamps, compared case-insensitively at any depth; the
list is ``FINGERPRINT_IGNORE_FIELDS``). The processor keeps the fingerprint of each
resource as last handed to handlers, per (tenant, service, path), in the resource's
state item (:mod:`.ordering`); a fetched resource
with the same fingerprint is *unchanged*, and handlers that did not opt in are skipped.
That ends a write-back loop even when Visma does not say who made the change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

DEFAULT_IGNORED_FIELDS = frozenset(
    {
        "lastmodifieddatetime",
        "lastmodified",
        "modifieddatetime",
        "timestamp",
        "etag",
        "@odata.etag",
        "rowversion",
    }
)


def ignored_fields(names: Iterable[str]) -> frozenset[str]:
    """Field names as the fingerprint compares them (case-insensitively)."""
    return frozenset(name.strip().casefold() for name in names if name.strip())


def fingerprint(resource: Any, ignored: frozenset[str] = DEFAULT_IGNORED_FIELDS) -> str:
    """A stable hash of ``resource`` without the ``ignored`` fields (at any depth)."""
    canonical = json.dumps(_without(resource, ignored), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _without(value: Any, ignored: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, ignored) for k, v in value.items() if str(k).casefold() not in ignored}
    if isinstance(value, list):
        return [_without(v, ignored) for v in value]
    return value
