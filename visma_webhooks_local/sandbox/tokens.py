"""Visma Connect's client-credentials grant: tokens bound to a tenant, checked on every API call."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from visma_webhooks_local.sandbox.responses import Response


class TokenIssuer:
    """Issues and checks Bearer tokens; iterating over it yields the tokens issued and still held."""

    def __init__(self, lock: threading.RLock, client_id: str | None, client_secret: str | None, ttl: int):
        self._lock = lock
        self.client_id = client_id
        self._client_secret = client_secret
        self.ttl = ttl
        self._tokens: dict[str, tuple[str, float, str | None]] = {}  # token → (tenant, expires at, client)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._tokens))

    def __len__(self) -> int:
        return len(self._tokens)

    def issue(self, headers: Any, form: Mapping[str, str]) -> Response:
        """``POST /connect/token``: the client from the form or HTTP Basic; ``tenant_id`` required."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return Response(400, {"error": "invalid_request", "error_description": "bad Basic header"})
        if form.get("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type"})
        if not self._client_ok(client_id, client_secret):
            return Response(401, {"error": "invalid_client"})
        tenant = form.get("tenant_id")
        if not tenant:
            return Response(400, {"error": "invalid_request", "error_description": "tenant_id is required"})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (tenant, time.monotonic() + self.ttl, client_id)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}
        if form.get("scope"):
            body["scope"] = form["scope"]
        extra = {"client_id": client_id, "scope": form.get("scope")}  # never the secret
        return Response(200, body, {"Cache-Control": "no-store"}, tenant, extra=extra)

    def holder_of(self, headers: Any) -> tuple[str | None, str | None]:
        """(tenant, client id) of a valid Bearer token in ``Authorization``, else (None, None).

        The client id is what Visma names as a change's ``ApiClientId``.
        """
        value = headers.get("Authorization", "")
        if not value.lower().startswith("bearer "):
            return None, None
        with self._lock:
            found = self._tokens.get(value[7:].strip())
        if found is None or found[1] <= time.monotonic():
            return None, None
        return found[0], found[2]

    def revoke(self, tenant: str | None = None) -> int:
        """Invalidate issued tokens (of one tenant, or all); returns how many."""
        with self._lock:
            doomed = [t for t, (owner, *_) in self._tokens.items() if tenant is None or owner == tenant]
            for token in doomed:
                del self._tokens[token]
        return len(doomed)

    def _client_ok(self, client_id: str | None, client_secret: str | None) -> bool:
        if self.client_id is None:
            return True  # any client, when the sandbox was not given one
        return client_id == self.client_id and hmac.compare_digest(
            (client_secret or "").encode(), (self._client_secret or "").encode()
        )
