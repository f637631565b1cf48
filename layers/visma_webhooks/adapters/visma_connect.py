"""Visma Connect access tokens (OAuth2 client credentials), one per (tenant, scope set), cached.

Visma's API services share Visma Connect but each needs its own scopes, so a token is
cached per tenant and scope set (the scopes compared as a set: order and repeated spaces
do not matter). ``None`` is the client's default scope. A token is kept until 60 s (10 % for tokens shorter than 10 minutes) before its
``expires_in``. Concurrent callers for one tenant share one token request. Neither the
client secret nor a token ever appears in an exception message or a log line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from visma_webhooks.domain.errors import ThrottledError, TransientVismaError, VismaAuthError
from visma_webhooks.domain.rate_limits import throttle_wait


@dataclass
class Token:
    value: str
    refresh_at: float  # the cache's clock


def scope_key(scope: str | None) -> str:
    """The scope set as one canonical string (sorted, single spaces); empty: the default scope."""
    return " ".join(sorted(set((scope or "").split())))


class TokenCache:
    """The tokens of one Visma Connect client, by (tenant, scope set)."""

    def __init__(
        self,
        session: requests.Session,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None,
        *,
        clock: Callable[[], float],
        count: Callable[[str], None],
    ):
        self.session = session
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope  # the default: used when a request names no scope of its own
        self._clock = clock
        self._count = count  # counts "token_requests" and "throttled" in the client's stats
        self._tokens: dict[tuple[str, str], Token] = {}
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str, timeout: tuple[float, float], scope: str | None = None) -> str:
        """The token for the tenant and scope, requested from Visma Connect only when none is fresh."""
        scope = scope or self.scope
        key = (tenant_id, scope_key(scope))
        cached = self._cached(key)
        if cached:
            return cached
        with self._key_lock(key):
            cached = self._cached(key)  # another thread may have fetched it meanwhile
            if cached:
                return cached
            value, expires_in = self._request(tenant_id, scope, timeout)
            margin = min(60.0, 0.1 * expires_in)
            with self._lock:
                self._tokens[key] = Token(value, self._clock() + expires_in - margin)
            return value

    def peek(self, tenant_id: str, scope: str | None = None) -> Token | None:
        with self._lock:
            return self._tokens.get((tenant_id, scope_key(scope or self.scope)))

    def drop(self, tenant_id: str, value: str) -> None:
        """Forget the token (whatever its scope), unless another thread has already replaced it."""
        with self._lock:
            for key in [k for k, t in self._tokens.items() if k[0] == tenant_id and t.value == value]:
                del self._tokens[key]

    def invalidate(self, tenant_id: str) -> None:
        """Forget every token of the tenant."""
        with self._lock:
            for key in [k for k in self._tokens if k[0] == tenant_id]:
                del self._tokens[key]

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _cached(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    def _request(self, tenant_id: str, scope: str | None, timeout: tuple[float, float]) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "tenant_id": tenant_id,
        }
        if scope:
            form["scope"] = scope
        self._count("token_requests")
        where: dict[str, Any] = {"method": "POST", "path": urlsplit(self.token_url).path or "/"}
        try:
            response = self.session.post(self.token_url, data=form, timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            raise TransientVismaError("token request timed out", **where) from None
        except requests.RequestException:
            raise TransientVismaError("token request failed to connect", **where) from None
        status = response.status_code
        if status == 429:
            self._count("throttled")
            raise ThrottledError("token endpoint rate limit", throttle_wait(response.headers), **where)
        if status == 408 or status >= 500:
            raise TransientVismaError("token endpoint error", status, **where)
        if status >= 300:
            reason = error_reason(response, self._client_secret)
            raise VismaAuthError(f"token request refused: {reason}", status, **where)
        try:
            data = response.json()
            value = data["access_token"]
            expires_in = float(data.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise TransientVismaError("token response is not a token", status, **where) from None
        if not isinstance(value, str) or not value:
            raise TransientVismaError("token response is not a token", status, **where)
        return value, max(1.0, expires_in)


def error_reason(response: requests.Response, *secrets: str) -> str:
    """A short reason from Visma's error body, scrubbed of ``secrets``."""
    reason = response.reason or "error"
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "Message", "ExceptionMessage", "error_description", "error"):
            if isinstance(data.get(key), str) and data[key].strip():
                reason = data[key].strip()
                break
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, "***")
    return reason[:200]
