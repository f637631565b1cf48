"""Every error the processor classifies, free of any dependency.

The domain decides what to do with a failure by its class alone: a
:class:`PermanentVismaError` or a handler's :class:`PermanentError` is not retried, a
:class:`ThrottledError` waits for Visma's budget, any other :class:`TransientVismaError`
is retried with backoff. The Visma HTTP adapter raises them; the domain never needs
``requests`` to catch them.
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(RuntimeError):
    """A function is not configured to run safely (it refuses to start)."""


class VismaError(Exception):
    """Any failure talking to Visma. ``status`` is the HTTP status (None without a response)."""

    def __init__(
        self, reason: str, status: int | None = None, *, method: str | None = None, path: str | None = None
    ):
        self.reason = reason
        self.status = status
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method and path else ""
        super().__init__(f"{where}{reason}" + (f" (HTTP {status})" if status is not None else ""))


class TransientVismaError(VismaError):
    """Worth retrying later: 5xx, 408, connection errors and timeouts once retries are used up."""


class VismaAuthError(TransientVismaError):
    """The token endpoint refused the client, or a fresh token still got a 401."""


class ThrottledError(TransientVismaError):
    """Visma's rate limit: try again after ``retry_after`` seconds (never slept on here)."""

    def __init__(self, reason: str, retry_after: float, status: int | None = 429, **kwargs: Any):
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(f"{reason}; retry after {self.retry_after:.0f} s", status, **kwargs)
        self.reason = reason


class PermanentVismaError(VismaError):
    """Retrying cannot help: 404, 410 and the other 4xx (except 401, 408 and 429)."""

    status: int


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help; the reason goes into the feedback."""


class ResourceHeld(Exception):
    """Another notification of the resource holds its lease: wait ``held_for`` seconds at most."""

    def __init__(self, reason: str, held_for: float):
        super().__init__(reason)
        self.held_for = held_for
