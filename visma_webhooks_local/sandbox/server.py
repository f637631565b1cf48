"""The sandbox's HTTP server and :class:`VismaSandbox`, which answers each request.

Every request is logged and its effects (feedback, writes, tokens, rule hits, rate
limit use) are recorded before its answer goes out, so that whoever has the answer
finds them in the sandbox.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from visma_webhooks_local.sandbox.control import control
from visma_webhooks_local.sandbox.faults import Faults, RateLimits, Rule
from visma_webhooks_local.sandbox.fixtures import load_fixtures, lookup
from visma_webhooks_local.sandbox.responses import (
    CONTROL_PREFIX,
    FEEDBACK_PATH,
    TOKEN_PATH,
    Response,
    merge_headers,
    now_iso,
)
from visma_webhooks_local.sandbox.tokens import TokenIssuer

log = logging.getLogger(__name__)

MAX_LOG_ENTRIES = 100_000


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that can close its keep-alive connections on shutdown."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any):
        self.connections: set[socket.socket] = set()
        self.accepted = 0
        self._conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self.connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            open_sockets = list(self.connections)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client went away (e.g. it timed out first): nothing to report
        log.exception("sandbox request failed")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VismaSandbox/1.0"
    sandbox: VismaSandbox

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _dispatch(self) -> None:
        self.sandbox._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox: " + format, *args)


class VismaSandbox:
    """The sandbox server; see the package docstring for what it serves."""

    def __init__(
        self,
        port: int = 0,
        fixtures: str | Path | Mapping[str, Any] | None = None,
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
        rate_limit: int = 100_000,
        rate_window: float = 3600.0,
        synthesize: bool = True,
    ):
        self.host = host
        self._requested_port = port
        self.synthesize = synthesize
        self._fixtures = load_fixtures(fixtures)
        self.resources: dict[str, Any] = copy.deepcopy(self._fixtures)
        self._lock = threading.RLock()
        self._faults = Faults(
            self._lock,
            seed,
            latency=latency,
            error_rate=error_rate,
            throttle_rate=throttle_rate,
            timeout_rate=timeout_rate,
            timeout_seconds=timeout_seconds,
            rate_limit=rate_limit,
        )
        self._limits = RateLimits(self._lock, rate_window)
        self._tokens = TokenIssuer(self._lock, client_id, client_secret, token_ttl)
        self._feedback: list[dict[str, Any]] = []
        self._writes: list[dict[str, Any]] = []
        self._requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOG_ENTRIES)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> VismaSandbox:
        if self._server is not None:
            return self
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="visma-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes hanging requests
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> VismaSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The API base URL (resources are at ``url + "/v1/..."``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (to observe connection reuse)."""
        return self._server.accepted if self._server else 0

    @property
    def client_id(self) -> str | None:
        return self._tokens.client_id

    @property
    def token_ttl(self) -> int:
        return self._tokens.ttl

    @property
    def rate_window(self) -> float:
        return self._limits.window

    # -- Python control API -------------------------------------------------------------

    @property
    def feedback(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._feedback)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._requests]

    @property
    def writes(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._writes)

    def faults(self) -> dict[str, Any]:
        """The current fault settings and rules (with how often each rule has fired)."""
        return self._faults.snapshot()

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Change the given settings (see :meth:`.Faults.update`); ``rules`` replaces every rule."""
        self._faults.update(**settings)
        return self.faults()

    def add_rule(self, path: str, status: int | None = None, times: int | None = None, **fields: Any) -> Rule:
        """Append a per-path rule (see the package docstring) and return it."""
        rule = Rule.from_dict({"path": path, "status": status, "times": times, **fields})
        self._faults.add_rule(rule)
        return rule

    def clear_rules(self) -> None:
        self._faults.clear_rules()

    def set_resource(self, path: str, document: Any) -> None:
        if not path.startswith("/v1/"):
            raise ValueError("resource paths start with /v1/")
        with self._lock:
            self.resources[path] = copy.deepcopy(document)

    def revoke_tokens(self, tenant: str | None = None) -> int:
        """Invalidate issued tokens (of one tenant, or all); the next API call gets a 401."""
        return self._tokens.revoke(tenant)

    def reset(self) -> None:
        """Back to the start: fault settings, no rules, empty logs, fresh rate windows and documents."""
        with self._lock:
            self._faults.reset()
            self._feedback.clear()
            self._writes.clear()
            self._requests.clear()
            self._limits.reset()
            self.resources = copy.deepcopy(self._fixtures)

    # -- request handling ---------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
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
        if path.startswith(CONTROL_PREFIX):
            self._send(h, method, control(self, method, path, raw))
            return
        response = self._serve(method, path, h.headers, raw)
        entry = {
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
    def _send(h: _Handler, method: str, response: Response) -> None:
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

    def _serve(self, method: str, path: str, headers: Any, raw: bytes) -> Response:
        is_api = path.startswith("/v1/")
        if is_api:
            self._hang(self._faults["latency"])
        form: dict[str, str] = {}
        if path == TOKEN_PATH:
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            tenant = form.get("tenant_id") or None
        else:
            tenant = self._tokens.tenant_of(headers)

        rule = self._faults.take_rule(method, path, tenant)
        if rule is not None:
            self._hang(rule.delay)
            if rule.status is not None:
                return rule.response(tenant, self._rate_headers(tenant))

        if path == TOKEN_PATH:
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
            response = self._api(method, path, tenant, raw)
        response.tenant = response.tenant or tenant
        response.headers = {**self._rate_headers(response.tenant), **response.headers}
        if rule is not None:
            response.headers = merge_headers(response.headers, rule.headers)
            response.fault = response.fault or "rule"
        return response

    def _hang(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _rate_headers(self, tenant: str | None) -> dict[str, str]:
        return self._limits.headers(tenant, int(self._faults["rate_limit"]))

    def _api(self, method: str, path: str, tenant: str, raw: bytes) -> Response:
        # The rate limit first: every authenticated call uses one unit, as Visma counts them.
        wait = self._limits.take(tenant, int(self._faults["rate_limit"]))
        if wait is not None:
            return Response(
                429,
                {"message": "API rate limit exceeded"},
                {"Retry-After": str(math.ceil(wait))},
                tenant,
                "rate_limit",
            )
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
        response = self._route(method, path, tenant, raw)
        response.fault = fault
        return response

    def _route(self, method: str, path: str, tenant: str, raw: bytes) -> Response:
        if method in ("GET", "HEAD"):
            with self._lock:
                document = lookup(self.resources, path, self.synthesize)
            if document is None:
                return Response(404, {"message": f"resource not found: {path}"})
            return Response(200, document)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return Response(400, {"message": "the request body is not JSON"})
        if path == FEEDBACK_PATH:
            return self._record_feedback(method, tenant, body)
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            return Response(405, {"message": f"{method} is not supported"})
        with self._lock:
            self._writes.append(
                {"tenant": tenant, "method": method, "path": path, "body": body, "received_at": now_iso()}
            )
        if method == "POST":
            return Response(201, None, {"Location": path})
        return Response(204)

    def _record_feedback(self, method: str, tenant: str, body: Any) -> Response:
        if method != "POST":
            return Response(405, {"message": "feedback is created with POST"})
        if not isinstance(body, dict):
            return Response(400, {"message": "feedback must be a JSON object"})
        problems = _feedback_problems(body)
        if problems:
            return Response(400, {"message": "; ".join(problems)})
        record = {
            "tenant": tenant,
            "notificationId": body["notificationId"],
            "source": body.get("source"),
            "description": body.get("description"),
            "isSuccess": body["isSuccess"],
            "received_at": now_iso(),
        }
        with self._lock:
            self._feedback.append(record)
        return Response(201)


def _feedback_problems(body: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(body.get("notificationId"), str) or not body["notificationId"]:
        problems.append("notificationId must be a non-empty string")
    if not isinstance(body.get("isSuccess"), bool):
        problems.append("isSuccess must be true or false")
    for name in ("source", "description"):
        if body.get(name) is not None and not isinstance(body[name], str):
            problems.append(f"{name} must be a string")
    return problems
