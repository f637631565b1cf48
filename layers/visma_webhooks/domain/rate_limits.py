"""Visma's rate-limit headers, read in one place.

Every answer carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (seconds until the fixed window resets; a value this large is read
as a Unix time); a 429 carries ``Retry-After`` (seconds or an HTTP date).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_THROTTLE_SECONDS = 60.0  # a 429 that says nothing about when to come back
_UNIX_TIME_THRESHOLD = 1_000_000_000
_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@dataclass(frozen=True)
class RateLimit:
    """The ``X-RateLimit-*`` values of one answer."""

    limit: int | None
    remaining: int | None
    reset: float | None  # seconds until the window resets

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        """The answer's rate-limit values; None when it carries none of the headers."""
        if not any(h in headers for h in _HEADERS):
            return None
        return cls(
            limit=_int(headers.get("X-RateLimit-Limit")),
            remaining=_int(headers.get("X-RateLimit-Remaining")),
            reset=reset_seconds(headers.get("X-RateLimit-Reset")),
        )


def throttle_wait(headers: Mapping[str, str]) -> float:
    """Seconds to wait after a 429: ``Retry-After``, else ``X-RateLimit-Reset``, else a minute."""
    retry_after = (headers.get("Retry-After") or "").strip()
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                return max(0.0, when.timestamp() - time.time())
    reset = reset_seconds(headers.get("X-RateLimit-Reset"))
    return reset if reset is not None else DEFAULT_THROTTLE_SECONDS


def reset_seconds(value: str | None) -> float | None:
    """``X-RateLimit-Reset`` as seconds from now (a Unix time is converted)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds >= _UNIX_TIME_THRESHOLD:
        seconds -= time.time()
    return max(0.0, seconds)


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
