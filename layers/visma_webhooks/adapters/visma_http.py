"""The Visma.net ERP API client: Visma Connect tokens, fetching, feedback, write-backs.

The processor's domain code talks to Visma only through :class:`VismaClient` and the
errors below; it never sees ``requests``.

* **Services** (:mod:`visma_webhooks.domain.services`): every call names its service
  (``financials``, ``salesorders``, ``journaltransactions``) and a path on it. The request
  goes to that service's *configured* base URL (:class:`~visma_webhooks.domain.services.Endpoints`),
  never to a host taken from a payload, and only if the path matches the service's
  pattern (``/v1/`` or ``/v2/`` on Financials, ``/api/v3/`` on SalesOrders, ...) and
  holds no dot segment, encoded separator, whitespace or other trick.
* **Tokens** come from :mod:`visma_webhooks.adapters.visma_connect`, one cached token per
  (tenant, scope set): each service's configured scope, else the scope of the client
  secret. On a 401 the token is dropped and fetched again once; the request is then
  retried once.
* **Retries** (5xx, 408, connection errors, timeouts): at most ``max_retries`` with
  jittered exponential backoff, done here rather than by urllib3 so that each retry can be
  checked against the Lambda's remaining time: a retry starts only if its sleep plus a
  whole attempt (connect + read timeout) ends ``safety_margin`` seconds before the
  deadline. The first attempt's read timeout is shortened to fit the time left.
  Every method retries, POST included: a post that failed here would be repeated by the
  queue's retry anyway, and the processor guards feedback with its own idempotency key.
* **Rate limits** (headers read by :mod:`visma_webhooks.domain.rate_limits`) are kept per
  (tenant, service): each service is its own API with its own window. A 429 raises
  :class:`ThrottledError` at once (no sleeping) with the wait from ``Retry-After``, else
  ``X-RateLimit-Reset``, else 60 s. A response with ``X-RateLimit-Remaining: 0`` is
  returned normally, but the tenant's calls to that service then raise
  :class:`ThrottledError` without a request until the reset has passed. The last
  ``X-RateLimit-*`` values are in :attr:`VismaClient.rate_limit`.
* **Budget** (:mod:`visma_webhooks.domain.budgets`): with a ``budget``, every attempt
  spends one call of the tenant's shared budget first (raising
  :class:`~visma_webhooks.domain.budgets.BudgetWait` when there is none), except the first
  attempt of a call made with ``reserved=True``, whose call the caller took beforehand
  with :meth:`VismaClient.reserve`. Every answer's headers go to the budget too.
* **Auth failures** (the token endpoint refusing the credentials, or a 401 that a fresh
  token does not cure) raise :class:`VismaAuthError`, a transient error: the message goes
  back to the queue and, if the credentials stay wrong, to the DLQ, from where it can be
  replayed once they are fixed.

Neither the client secret nor a token ever appears in an exception message or a log line.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from visma_webhooks.adapters.visma_connect import TokenCache, error_reason
from visma_webhooks.domain.budgets import Budget, Priority
from visma_webhooks.domain.errors import (
    PermanentVismaError,
    ThrottledError,
    TransientVismaError,
    VismaAuthError,
)
from visma_webhooks.domain.rate_limits import DEFAULT_THROTTLE_SECONDS, RateLimit, throttle_wait
from visma_webhooks.domain.services import FEEDBACK_SERVICE, SERVICES, Endpoint, Endpoints

log = logging.getLogger(__name__)

FEEDBACK_PATH = "/v1/webhooknotificationfeedback"
MAX_FEEDBACK_DESCRIPTION = 1000
MAX_BACKOFF_SECONDS = 10.0
POOL_SIZE = 16
USER_AGENT = "visma-webhooks/0.1 (+python-requests)"
_BAD_PATH = re.compile(r"(\.\.|//|\\|%2e|%2f|%5c|%00|[\s#@\x00-\x1f\x7f])", re.IGNORECASE)


@dataclass(frozen=True)
class _Call:
    """One API call: who, which service, what; rate limits are kept per ``key``."""

    tenant_id: str
    service: str
    method: str
    path: str
    scope: str | None  # the service's configured scope; None: the client's default
    priority: Priority = Priority.WEBHOOK
    reserved: bool = False  # the first attempt's call was taken from the budget already

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.service)


class _OutOfTime(TransientVismaError):
    """The invocation has no time left for another request."""


class _Bearer(AuthBase):
    """Sets the Authorization header (explicit auth also keeps ~/.netrc out of it)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def _endpoints(endpoints: Endpoints | str) -> Endpoints:
    """``Endpoints`` as given; a single base URL serves every service (a sandbox or a proxy)."""
    if isinstance(endpoints, str):
        return Endpoints({name: Endpoint(endpoints) for name in SERVICES})
    return endpoints


class VismaClient:
    """Thread-safe client for one Visma Connect client (``client_id``) and any number of tenants.

    ``endpoints`` says where each service is reached and with which scopes; ``scope`` is
    the default scope (the one in the client secret) for a service configured without one.

    ``remaining_time`` is a callable returning the seconds left in the Lambda invocation
    (e.g. ``lambda: context.get_remaining_time_in_millis() / 1000``); it may be replaced
    per invocation by assigning the attribute. ``clock`` and ``sleep`` are injectable
    for tests. ``stats`` counts token requests, GETs and POSTs sent (every attempt),
    all API requests, retries and throttling errors raised.
    """

    def __init__(
        self,
        endpoints: Endpoints | str,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        max_retries: int = 3,
        backoff: float = 0.2,
        remaining_time: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        safety_margin: float = 2.0,
        budget: Budget | None = None,
    ):
        self.endpoints = _endpoints(endpoints)
        self._bases: dict[str, tuple[str, str]] = {}  # service → (base URL, its netloc)
        for service, endpoint in self.endpoints.by_service.items():
            parts = urlsplit(endpoint.base_url)
            if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
                raise ValueError(f"{service} base URL must be an http(s) URL without query or fragment")
            self._bases[service] = (endpoint.base_url.rstrip("/"), parts.netloc)
        self.client_id = client_id
        self._client_secret = client_secret
        if isinstance(timeout, int | float):
            timeout = (timeout, timeout)
        self.timeout = (float(timeout[0]), float(timeout[1]))
        self.max_retries = max(0, int(max_retries))
        self.backoff = backoff
        self.remaining_time = remaining_time
        self.safety_margin = safety_margin
        self.budget = budget
        self._clock = clock
        self._sleep = sleep
        self.session = session or self._new_session()
        self.rate_limit: dict[tuple[str, str], RateLimit] = {}  # by (tenant, service)
        self.stats: dict[str, int] = dict.fromkeys(
            ("token_requests", "gets", "posts", "requests", "retries", "throttled"), 0
        )
        self.tokens = TokenCache(
            self.session, token_url, client_id, client_secret, scope, clock=clock, count=self._count
        )
        self._blocked_until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        bases = {service: base for service, (base, _) in self._bases.items()}
        return f"VismaClient(endpoints={bases!r}, client_id={self.client_id!r})"

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        return session

    def close(self) -> None:
        self.session.close()

    # -- public API ---------------------------------------------------------------------

    def get(
        self,
        tenant_id: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        priority: Priority = Priority.WEBHOOK,
        reserved: bool = False,
    ) -> Any:
        """GET ``path`` on ``service`` as the tenant and return the decoded JSON."""
        return self.request(
            tenant_id, "GET", service, path, params=params, priority=priority, reserved=reserved
        )

    def reserve(self, tenant_id: str, units: int, priority: Priority = Priority.WEBHOOK) -> None:
        """Take ``units`` calls from the tenant's budget now, for calls made later with ``reserved=True``."""
        if self.budget is not None and units > 0:
            self.budget.take(tenant_id, units, priority)

    def post_feedback(
        self,
        tenant_id: str,
        notification_id: str,
        *,
        source: str,
        description: str,
        is_success: bool,
        reserved: bool = False,
    ) -> None:
        """POST a WebhookNotificationFeedback to Financials (Visma answers 201; any 2xx is accepted)."""
        if len(description) > MAX_FEEDBACK_DESCRIPTION:
            description = description[: MAX_FEEDBACK_DESCRIPTION - 1] + "…"
        body = {
            "notificationId": notification_id,
            "source": source,
            "description": description,
            "isSuccess": bool(is_success),
        }
        self.request(tenant_id, "POST", FEEDBACK_SERVICE, FEEDBACK_PATH, json=body, reserved=reserved)

    def request(
        self,
        tenant_id: str,
        method: str,
        service: str,
        path: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        *,
        priority: Priority = Priority.WEBHOOK,
        reserved: bool = False,
    ) -> Any:
        """Send ``method`` to ``path`` on ``service``; return the decoded JSON body (None if empty)."""
        if not tenant_id or not isinstance(tenant_id, str):
            raise ValueError("tenant_id is required")
        url = self._url(service, path)
        call = _Call(
            tenant_id, service, method.upper(), path, self.endpoints[service].scope, priority, reserved
        )
        return self._send(call, url, json, params)

    def invalidate_token(self, tenant_id: str) -> None:
        """Forget the tenant's cached tokens, whatever their scope (the next call fetches a new one)."""
        self.tokens.invalidate(tenant_id)

    # -- internals ----------------------------------------------------------------------

    def _url(self, service: str, path: str) -> str:
        if service not in SERVICES or service not in self._bases:
            raise ValueError(f"unknown or unconfigured Visma service {service!r}")
        pattern = SERVICES[service].prefixes
        if not isinstance(path, str) or not pattern.match(path) or _BAD_PATH.search(path):
            raise ValueError(f"path must be a plain {service} API path matching {pattern.pattern}")
        base, netloc = self._bases[service]
        url = base + path
        if urlsplit(url).netloc != netloc:  # pragma: no cover - guarded by the checks above
            raise ValueError("path would leave the configured API host")
        return url

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def _check_blocked(self, call: _Call) -> None:
        with self._lock:
            until = self._blocked_until.get(call.key)
        if until is None:
            return
        wait = until - self._clock()
        if wait > 0:
            self._count("throttled")
            raise ThrottledError(
                f"rate limit exhausted for this tenant on {call.service}",
                wait,
                status=429,
                method=call.method,
                path=call.path,
            )
        with self._lock:
            if self._blocked_until.get(call.key) == until:
                del self._blocked_until[call.key]

    def _budget(self) -> float:
        """Seconds that an attempt may still use (infinite without ``remaining_time``)."""
        if self.remaining_time is None:
            return float("inf")
        return float(self.remaining_time()) - self.safety_margin

    def _attempt_timeout(self, method: str, path: str) -> tuple[float, float]:
        """The (connect, read) timeout, shortened to the time left; raises if none is left."""
        budget = self._budget()
        if budget <= 0:
            raise _OutOfTime("no time left in the invocation", method=method, path=path)
        connect, read = self.timeout
        return (min(connect, budget), min(read, budget))

    def _backoff_delay(self, retry: int) -> float:
        ceiling = min(MAX_BACKOFF_SECONDS, self.backoff * 2.0**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _send(self, call: _Call, url: str, body: Any, params: Mapping[str, Any] | None) -> Any:
        method, path = call.method, call.path
        retry = 0
        refreshed = False
        while True:
            self._check_blocked(call)
            if self.budget is not None and (retry or refreshed or not call.reserved):
                self.budget.take(call.tenant_id, 1, call.priority)
            try:
                token = self.tokens.get(call.tenant_id, self._attempt_timeout(method, path), call.scope)
                response = self._http(method, url, token, body, params, self._attempt_timeout(method, path))
                if response.status_code == 401 and not refreshed:
                    refreshed = True
                    self.tokens.drop(call.tenant_id, token)
                    log.info("Visma answered 401; refreshing the token once", extra={"path": path})
                    continue
                return self._result(call, response, token)
            except TransientVismaError as exc:
                delay = self._backoff_delay(retry)
                if isinstance(exc, ThrottledError | VismaAuthError | _OutOfTime) or not self._may_retry(
                    retry, delay
                ):
                    raise
                retry += 1
                self._count("retries")
                log.warning(
                    "Visma request failed; retrying",
                    extra={
                        "method": method,
                        "path": path,
                        "status": exc.status,
                        "attempt": retry,
                        "delay": delay,
                    },
                )
                self._sleep(delay)

    def _may_retry(self, retry: int, delay: float) -> bool:
        """Retries left, and time for the sleep plus a whole attempt before the margin."""
        if retry >= self.max_retries:
            return False
        connect, read = self.timeout
        return self._budget() >= delay + connect + read

    def _http(
        self,
        method: str,
        url: str,
        token: str,
        body: Any,
        params: Mapping[str, Any] | None,
        timeout: tuple[float, float],
    ) -> requests.Response:
        self._count("requests")
        if method == "GET":
            self._count("gets")
        elif method == "POST":
            self._count("posts")
        path = urlsplit(url).path
        try:
            return self.session.request(
                method,
                url,
                json=body,
                params=params,
                auth=_Bearer(token),
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise TransientVismaError("timed out", method=method, path=path) from None
        except requests.ConnectionError:
            raise TransientVismaError("connection failed", method=method, path=path) from None
        except requests.RequestException as exc:
            raise TransientVismaError(
                f"request failed: {type(exc).__name__}", method=method, path=path
            ) from None

    def _result(self, call: _Call, response: requests.Response, token: str) -> Any:
        method, path = call.method, call.path
        status = response.status_code
        self._note_rate_limit(call.key, response)
        if status == 429:
            wait = throttle_wait(response.headers)
            self._block(call.key, wait)
            self._count("throttled")
            raise ThrottledError("Visma rate limit reached", wait, status=429, method=method, path=path)
        if 200 <= status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise TransientVismaError("response is not JSON", status, method=method, path=path) from None
        reason = error_reason(response, token, self._client_secret)
        if status == 401:
            raise VismaAuthError(
                f"unauthorised with a fresh token: {reason}", status, method=method, path=path
            )
        if status == 408 or status >= 500:
            raise TransientVismaError(reason, status, method=method, path=path)
        raise PermanentVismaError(reason, status, method=method, path=path)

    def _note_rate_limit(self, key: tuple[str, str], response: requests.Response) -> None:
        info = RateLimit.from_headers(response.headers)
        if info is None:
            return
        with self._lock:
            self.rate_limit[key] = info
        if self.budget is not None:
            self.budget.observe(key[0], info)
        if info.remaining == 0 and response.status_code != 429:
            self._block(key, info.reset if info.reset is not None else DEFAULT_THROTTLE_SECONDS)

    def _block(self, key: tuple[str, str], wait: float) -> None:
        until = self._clock() + max(0.0, wait)
        with self._lock:
            self._blocked_until[key] = max(until, self._blocked_until.get(key, until))
