""":class:`VismaSandbox`: one port per Visma API service, and what answers each request.

Every request is logged and its effects (feedback, writes, tokens, rule hits, rate
limit use, webhooks queued) are recorded before its answer goes out, so that whoever
has the answer finds them in the sandbox.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS
from visma_webhooks_local.sandbox.api import route
from visma_webhooks_local.sandbox.budget import DEFAULT_CALLS_PER_WINDOW, DEFAULT_WINDOW_SECONDS, Budget
from visma_webhooks_local.sandbox.control import control
from visma_webhooks_local.sandbox.faults import Faults
from visma_webhooks_local.sandbox.fixtures import Documents, Fixtures
from visma_webhooks_local.sandbox.httpserver import Handler, Server
from visma_webhooks_local.sandbox.operations import Operations
from visma_webhooks_local.sandbox.responses import (
    CONTROL_PREFIX,
    TOKEN_PATH,
    Response,
    merge_headers,
)
from visma_webhooks_local.sandbox.services import SandboxService, service
from visma_webhooks_local.sandbox.tokens import TokenIssuer
from visma_webhooks_local.sandbox.webhooks import Dispatcher, WebhookConfig

MAX_LOG_ENTRIES = 100_000
CONNECT = "connect"  # Visma Connect, in the request log and the call counts


class VismaSandbox(Operations):
    """The sandbox: Financials (with Visma Connect and the control API) on ``port``, SalesOrders V3
    on ``salesorders_port``, Journal Transactions on ``journaltx_port``; see the package docstring.
    """

    def __init__(
        self,
        port: int = 0,
        fixtures: Fixtures = None,
        latency: float = 0.0,
        error_rate: float = 0.0,
        throttle_rate: float = 0.0,
        seed: int | None = None,
        *,
        timeout_rate: float = 0.0,
        timeout_seconds: float = 30.0,
        host: str = "127.0.0.1",
        client_id: str | None = None,
        client_secret: str | None = None,
        token_ttl: int = 3600,
        rate_limit: int = DEFAULT_CALLS_PER_WINDOW,
        rate_window: float = DEFAULT_WINDOW_SECONDS,
        synthesize: bool = True,
        salesorders_port: int = 0,
        journaltx_port: int = 0,
        service_fixtures: Fixtures = None,
        webhooks: WebhookConfig | None = None,
    ):
        self.host = host
        self._requested_ports = {
            FINANCIALS: port,
            SALESORDERS: salesorders_port,
            JOURNAL_TRANSACTIONS: journaltx_port,
        }
        self.documents = Documents(fixtures, service_fixtures, synthesize)
        self._lock = threading.RLock()
        self._faults = Faults(
            self._lock,
            seed,
            latency=latency,
            error_rate=error_rate,
            throttle_rate=throttle_rate,
            timeout_rate=timeout_rate,
            timeout_seconds=timeout_seconds,
        )
        self._budget = Budget(self._lock, rate_limit, rate_window)
        self._tokens = TokenIssuer(self._lock, client_id, client_secret, token_ttl)
        self._dispatcher = Dispatcher(webhooks or WebhookConfig(), seed)
        self._feedback: list[dict[str, Any]] = []
        self._writes: list[dict[str, Any]] = []
        self._requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOG_ENTRIES)
        self._request = threading.local()  # the query of the request this thread answers
        self._stopping = threading.Event()
        self._servers: dict[str, Server] = {}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> VismaSandbox:
        if self._servers:
            return self
        self._stopping.clear()
        try:
            for name, port in self._requested_ports.items():
                handler = type("SandboxHandler", (Handler,), {"sandbox": self, "service": name})
                self._servers[name] = Server((self.host, port), handler)
        except OSError:
            self.stop()
            raise
        for name, server in self._servers.items():
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"visma-sandbox-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        servers, self._servers = self._servers, {}
        self._dispatcher.stop()
        if not servers:
            return
        self._stopping.set()  # wakes hanging requests
        for server in servers.values():
            if self._threads:
                server.shutdown()
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> VismaSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port(FINANCIALS)

    def _port(self, name: str) -> int:
        server = self._servers.get(name)
        if server is None:
            raise RuntimeError("the sandbox is not running")
        return int(server.server_address[1])

    @property
    def url(self) -> str:
        """The Financials API base URL (resources at ``url + "/v1/..."``), Visma Connect and the control API."""
        return f"http://{self.host}:{self.port}"

    @property
    def salesorders_url(self) -> str:
        """The SalesOrders V3 base URL (``/api/v3/SalesOrders/{orderType}/{orderNbr}``)."""
        return f"http://{self.host}:{self._port(SALESORDERS)}"

    @property
    def journaltx_url(self) -> str:
        """The Journal Transaction API base URL (``/api/v1/JournalTransactions/{batchNumber}``)."""
        return f"http://{self.host}:{self._port(JOURNAL_TRANSACTIONS)}"

    @property
    def urls(self) -> dict[str, str]:
        """Every service's base URL, by service name."""
        return {name: f"http://{self.host}:{self._port(name)}" for name in self._requested_ports}

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def connections(self) -> int:
        """TCP connections accepted so far, on every port (to observe connection reuse)."""
        return sum(server.accepted for server in self._servers.values())

    @property
    def client_id(self) -> str | None:
        return self._tokens.client_id

    @property
    def token_ttl(self) -> int:
        return self._tokens.ttl

    @property
    def rate_window(self) -> float:
        return self._budget.window_seconds

    @property
    def synthesize(self) -> bool:
        return self.documents.synthesize

    # -- request handling ---------------------------------------------------------------

    def _handle(self, h: Handler, service_name: str) -> None:
        started = time.time()
        split = urlsplit(h.path)
        path = split.path
        method = h.command
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(h, method, Response(400, {"message": "bad Content-Length"}))
            h.close_connection = True
            return
        raw = h.rfile.read(length) if length else b""
        self._request.query = split.query  # for the list endpoints; _serve keeps the signature subclasses use
        main = service_name == FINANCIALS  # Visma Connect and the control API live beside Financials
        if main and path.startswith(CONTROL_PREFIX):
            self._send(h, method, control(self, method, path, raw))
            return
        response = self._serve(service(service_name), method, path, h.headers, raw)
        entry = {
            "service": CONNECT if main and path == TOKEN_PATH else service_name,
            "method": method,
            "path": path,
            "query": split.query,
            "tenant": response.tenant,
            "status": response.status,
            "time": started,
            "duration": round(time.time() - started, 6),
            "fault": response.fault,
            **response.extra,
        }
        with self._lock:
            self._requests.append(entry)
        self._send(h, method, response)

    @staticmethod
    def _send(h: Handler, method: str, response: Response) -> None:
        body = b"" if response.body is None else json.dumps(response.body).encode()
        h.send_response(response.status)
        for name, value in response.headers.items():
            h.send_header(name, value)
        if response.status not in (204, 304):
            if body:
                h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body and method != "HEAD" and response.status not in (204, 304):
            h.wfile.write(body)

    def _serve(self, svc: SandboxService, method: str, path: str, headers: Any, raw: bytes) -> Response:
        is_api = bool(svc.api.match(path))
        is_token = svc.name == FINANCIALS and path == TOKEN_PATH
        if is_api:
            self._hang(self._faults["latency"])
        form: dict[str, str] = {}
        client = None
        if is_token:
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            tenant = form.get("tenant_id") or None
        else:
            tenant, client = self._tokens.holder_of(headers)

        caller = (tenant, client if not is_token else form.get("client_id"))
        rule = self._faults.take_rule(method, path, tenant)
        if rule is not None:
            self._hang(rule.delay)
            if rule.status is not None:
                return rule.response(tenant, self._budget.headers(caller))

        if is_token:
            response = self._tokens.issue(headers, form) if method == "POST" else Response(405)
        elif not is_api:
            response = Response(404, {"message": f"no such endpoint: {path}"})
        elif tenant is None:
            response = Response(
                401,
                {"message": "a valid Bearer token is required"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        else:
            response = self._api(svc, method, path, (tenant, client), raw)
        response.tenant = response.tenant or tenant
        response.headers = {**self._budget.headers(caller), **response.headers}
        if rule is not None:
            response.headers = merge_headers(response.headers, rule.headers)
            response.fault = response.fault or "rule"
        return response

    def _hang(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _api(
        self, svc: SandboxService, method: str, path: str, caller: tuple[str, str | None], raw: bytes
    ) -> Response:
        # The budget first: every authenticated call uses one call of its (tenant, client) window.
        tenant = caller[0]
        served, headers = self._budget.take(caller)
        if not served:
            return Response(429, {"message": "API rate limit exceeded"}, headers, tenant, "rate_limit")
        fault = None
        if self._faults.draw(self._faults["timeout_rate"]):
            self._hang(self._faults["timeout_seconds"])
            fault = "timeout"
        if self._faults.draw(self._faults["error_rate"]):
            return Response(
                503, {"message": "Service temporarily unavailable (injected)"}, {}, tenant, "error"
            )
        if self._faults.draw(self._faults["throttle_rate"]):
            return Response(
                429, {"message": "Too many requests (injected)"}, {"Retry-After": "1"}, tenant, "throttle"
            )
        response = route(self, svc, method, path, caller, raw, getattr(self._request, "query", ""))
        response.fault = fault
        response.headers = {**headers, **response.headers}
        return response
