"""Resource order: a handler never receives an older state of a resource after a newer one.

Two notifications of one resource can be processed at once by two instances, and the one
whose GET was slow could hand its older state to the handlers last. Each resource has
one state item (:mod:`visma_webhooks.adapters.resource_store`) shared by every
instance: a short **lease** serialises the notifications of one resource from the fetch
to the end of their handlers, and a **watermark**, the ``lastModifiedDateTime`` of the
state last handed to handlers, makes an older state ``superseded`` (skipped). The
fingerprint of that state (:mod:`.fingerprints`) lives in the same item.

Visma writes ``lastModifiedDateTime`` with or without an offset and with any number of
fraction digits; :func:`modified_at` makes it one sortable UTC text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

MODIFIED_FIELDS = ("lastmodifieddatetime", "lastmodified", "modifieddatetime")


def modified_at(document: Any) -> str | None:
    """The document's ``lastModifiedDateTime`` as sortable UTC text; None without one."""
    if not isinstance(document, Mapping):
        return None
    fields = {str(k).casefold(): v for k, v in document.items()}
    for name in MODIFIED_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value.strip():
            return normalise(value)
    return None


def normalise(value: str) -> str | None:
    """An ISO 8601 time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (no offset: UTC); None if unreadable."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if dot:  # .NET writes 7 fraction digits; fromisoformat reads at most 6
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:digits][:6].ljust(6, "0") + rest[digits:]
        text = f"{head}.{rest}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ResourceState:
    """What handlers last received of a resource, as the lease holder read it."""

    fingerprint: str | None = None
    modified: str | None = None  # the watermark: sortable UTC text


@dataclass(frozen=True)
class Lease:
    """The outcome of asking for a resource's lease: held by us (with its state), or not."""

    acquired: bool
    state: ResourceState = ResourceState()
    held_for: float = 0.0  # not acquired: seconds the holder may still hold it
    newer: bool = False  # taken on the condition that the fetched state is newer and differs


@dataclass(frozen=True)
class ResourceClaim:
    """The resource a notification claims with it: ``fetched`` is None when it is gone."""

    service: str
    path: str
    fetched: ResourceState | None


def superseded(state: ResourceState, modified: str | None) -> bool:
    """The fetched state is older than the one handlers already received."""
    return modified is not None and state.modified is not None and modified < state.modified


class ResourceStore(Protocol):
    """Leases and watermarks of resources, per (tenant, service, path)."""

    def acquire(self, tenant_id: str, service: str, path: str, owner: str, until: float) -> Lease:
        """The lease (with the state handlers last received), unless another owner holds it."""
        ...

    def release(
        self, tenant_id: str, service: str, path: str, owner: str, state: ResourceState | None, gone: bool
    ) -> Any:
        """The lease's release, for the write that records the notification's outcome."""
        ...
