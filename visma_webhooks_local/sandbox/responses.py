"""What every part of the sandbox answers with, and the paths it serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TOKEN_PATH = "/connect/token"  # noqa: S105 - a URL path, not a secret
FEEDBACK_PATH = "/v1/webhooknotificationfeedback"
CONTROL_PREFIX = "/_sandbox/"


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or None for no body
    headers: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    fault: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # added to the request log entry


def merge_headers(base: dict[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` on top, header names compared case-insensitively."""
    lowered = {k.lower() for k in extra}
    return {**{k: v for k, v in base.items() if k.lower() not in lowered}, **extra}


def format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
