"""The normalised notification every stage after ingest works with."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalise_event(name: str) -> str:
    """``Customer Changed`` → ``customer_changed``: lower case, non-alphanumeric runs → ``_``."""
    return _NON_ALNUM.sub("_", name.strip().lower()).strip("_")


class Notification(BaseModel):
    """One Visma notification, whichever format it arrived in.

    ``service`` and ``resource_path`` say which Visma API serves the resource and the path
    on it (both None when the notification names no resource). ``deleted``: the event is
    a deletion, or the resource turned out to be gone. ``api_client_id``: the Visma Connect
    client that made the change, when Visma says (ours for an echo of our own write).
    ``derived_id``: Visma issued no id for this item (one of several in a delivery with one
    header id), so it gets no feedback. ``raw`` is the item exactly as Visma sent it, so
    nothing is lost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    notification_id: str = Field(min_length=1, max_length=200)
    tenant_id: str = Field(min_length=1, max_length=200)
    event: str = Field(min_length=1, max_length=200)
    service: str | None = None
    resource_path: str | None = None
    deleted: bool = False
    api_client_id: str | None = None
    publisher: str | None = None
    action: str | None = None
    occurred_at: datetime | None = None
    source_format: Literal["legacy", "dispatcher", "reconciled"]
    derived_id: bool = False
    raw: dict[str, Any]

    @field_validator("event")
    @classmethod
    def _normalised(cls, value: str) -> str:
        normalised = normalise_event(value)
        if not normalised:
            raise ValueError("event has no letters or digits")
        return normalised

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def entity(self) -> str:
        """The entity part of the event: ``salesorder`` for ``salesorder_changed``."""
        return self.event.rsplit("_", 1)[0] if "_" in self.event else self.event

    @property
    def resource_id(self) -> str | None:
        """The last segment of the resource path (``1286`` for ``/v1/salesorder/1286``)."""
        if not self.resource_path:
            return None
        return self.resource_path.rstrip("/").rsplit("/", 1)[-1]
