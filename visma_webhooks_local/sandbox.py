"""An embedded Visma.net ERP API sandbox: a threaded HTTP server on loopback.

It stands in for Visma Connect and the ERP API in the local stack, the tests and the
benchmarks. In-process::

    with VismaSandbox(port=0, latency=0.05) as sandbox:
        client = VismaClient(sandbox.url, sandbox.token_url, "id", "secret")
        ...
        sandbox.feedback  # what the processor posted

or as a process: ``python -m visma_webhooks_local.sandbox --port 8099 [--latency S]
[--error-rate F] [--throttle-rate F] [--timeout-rate F] [--fixtures FILE]``, which prints
``Visma sandbox listening on http://127.0.0.1:PORT`` once it accepts connections.

Endpoints

* ``POST /connect/token``: client credentials (form fields, or HTTP Basic for the
  client). ``tenant_id`` is required; ``client_id``/``client_secret`` are checked when
  the sandbox was given them. The token is bound to the tenant and lasts ``token_ttl``.
* ``GET /v1/{entity}/{id...}`` (Bearer token): the document stored under that path in
  the fixtures (a JSON object mapping paths to documents; by default the project's
  ``events/visma-resources.json``, or none where that file is absent). A path that is not in the fixtures is *synthesised* as
  ``{"id": ..., "entity": ..., "synthetic": true}`` so that load tests can use any id,
  unless ``synthesize=False``. An id with a segment starting with ``missing``
  (``/v1/customer/missing-7``) is always 404, fixtures or not. Anything else is 404.
* ``POST /v1/webhooknotificationfeedback``: recorded as ``{tenant, notificationId,
  source, description, isSuccess, received_at}``; answers 201.
* Other writes under ``/v1/`` (POST, PUT, PATCH, DELETE) are recorded in ``writes`` and
  answered 201 (POST) or 204.

Every response outside the control API carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the tenant's window
resets). Each authenticated API call uses one unit of the tenant's ``rate_limit`` per
``rate_window`` (default 100,000 per hour, so that only tests that lower it meet it);
past it the answer is 429 with ``Retry-After``.

Fault injection (API calls under ``/v1/`` only): ``latency`` seconds before every answer;
``timeout_rate``: that fraction of calls hangs ``timeout_seconds`` before answering;
``error_rate``: answered 503; ``throttle_rate``: answered 429 with ``Retry-After: 1``.
``seed`` makes the draws reproducible. Per-path rules apply to any path, the token
endpoint included, and are checked first, in order::

    {"path": "/v1/customer/42", "status": 503, "times": 2}  # fail twice, then serve
    {"path": "/v1/customer/*", "status": 404}                # glob, for good
    {"path": "/v1/customer/7", "delay": 5}                   # hang 5 s, then serve
    {"path": "/v1/customer/8", "status": 429, "retry_after": 30, "headers": {...}}

Optional rule fields: ``method``, ``tenant``, ``body`` (the JSON to answer with).

Control API (not in the request log):

* ``GET /_sandbox/feedback``, ``GET /_sandbox/writes``;
* ``GET /_sandbox/requests``: method, path, query, tenant, status, time, duration,
  fault (token requests also client_id and scope, never the secret);
* ``GET|POST /_sandbox/faults``: the settings above; a body with ``path`` adds one
  rule, ``rules`` replaces them all;
* ``POST /_sandbox/resources``: ``{path: document}`` adds or replaces documents;
* ``POST /_sandbox/revoke-tokens`` (optionally ``{"tenant": ...}``);
* ``POST /_sandbox/reset``: fault settings back to their start values; logs, rules,
  rate windows and documents reset (issued tokens stay valid);
* ``GET /_sandbox/health``.

The same operations are methods and properties of :class:`VismaSandbox`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import fnmatch
import hmac
import json
import logging
import math
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = PROJECT_ROOT / "events" / "visma-resources.json"
TOKEN_PATH = "/connect/token"  # noqa: S105 - a URL path, not a secret
FEEDBACK_PATH = "/v1/webhooknotificationfeedback"
CONTROL_PREFIX = "/_sandbox/"
MAX_LOG_ENTRIES = 100_000
FAULT_SETTINGS = ("latency", "error_rate", "throttle_rate", "timeout_rate", "timeout_seconds", "rate_limit")


@dataclass
class Rule:
    """A per-path fault: answer ``status`` (or serve normally after ``delay``), ``times`` times or always."""

    path: str
    status: int | None = None
    times: int | None = None
    method: str | None = None
    tenant: str | None = None
    delay: float = 0.0
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hits: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        if not isinstance(data, Mapping):
            raise ValueError("a rule must be a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__ if f != "hits"}
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        path = data.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("rule path must be a string starting with /")
        status = data.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise ValueError("rule status must be an HTTP status code")
        times = data.get("times")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("rule times must be a positive integer (omit it for a permanent rule)")
        delay = data.get("delay", 0.0)
        if not isinstance(delay, int | float) or delay < 0:
            raise ValueError("rule delay must be a number of seconds >= 0")
        retry_after = data.get("retry_after")
        if retry_after is not None and (not isinstance(retry_after, int | float) or retry_after < 0):
            raise ValueError("rule retry_after must be a number of seconds >= 0")
        headers = data.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(v, str | int | float) for v in headers.values()
        ):
            raise ValueError("rule headers must map names to strings")
        method = data.get("method")
        return cls(
            path=path,
            status=status,
            times=times,
            method=method.upper() if isinstance(method, str) else None,
            tenant=data.get("tenant"),
            delay=float(delay),
            retry_after=retry_after,
            headers={str(k): str(v) for k, v in headers.items()},
            body=data.get("body"),
        )

    def matches(self, method: str, path: str, tenant: str | None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method != method:
            return False
        if self.tenant is not None and self.tenant != tenant:
            return False
        return path == self.path or fnmatch.fnmatchcase(path, self.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Response:
    status: int
    body: Any = None  # JSON-serialisable, or None for no body
    headers: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    fault: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # added to the request log entry


@dataclass
class _Window:
    started: float
    used: int = 0


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
    """The sandbox server; see the module docstring for what it serves."""

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
        self.client_id = client_id
        self._client_secret = client_secret
        self.token_ttl = token_ttl
        self.rate_window = rate_window
        self.synthesize = synthesize
        self._fixtures = _load_fixtures(fixtures)
        self.resources: dict[str, Any] = copy.deepcopy(self._fixtures)
        self._initial_faults: dict[str, float] = {}
        self._faults: dict[str, float] = {}
        self._rules: list[Rule] = []
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._tokens: dict[str, tuple[str, float]] = {}  # token → (tenant, expires at, monotonic)
        self._windows: dict[str, _Window] = {}
        self._feedback: list[dict[str, Any]] = []
        self._writes: list[dict[str, Any]] = []
        self._requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOG_ENTRIES)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.set_faults(
            latency=latency,
            error_rate=error_rate,
            throttle_rate=throttle_rate,
            timeout_rate=timeout_rate,
            timeout_seconds=timeout_seconds,
            rate_limit=rate_limit,
        )
        self._initial_faults = dict(self._faults)

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
        return self._server.server_address[1]

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
        with self._lock:
            return {**self._faults, "rules": [r.to_dict() for r in self._rules]}

    def set_faults(
        self,
        *,
        latency: float | None = None,
        error_rate: float | None = None,
        throttle_rate: float | None = None,
        timeout_rate: float | None = None,
        timeout_seconds: float | None = None,
        rate_limit: int | None = None,
        rules: list[Rule | Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Change the given settings; ``rules`` replaces every rule. Raises ValueError."""
        changes: dict[str, float] = {}
        for name, value in (("latency", latency), ("timeout_seconds", timeout_seconds)):
            if value is not None:
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be a number of seconds >= 0")
                changes[name] = float(value)
        for name, value in (
            ("error_rate", error_rate),
            ("throttle_rate", throttle_rate),
            ("timeout_rate", timeout_rate),
        ):
            if value is not None:
                if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                    raise ValueError(f"{name} must be a fraction between 0 and 1")
                changes[name] = float(value)
        if rate_limit is not None:
            if not isinstance(rate_limit, int) or isinstance(rate_limit, bool) or rate_limit < 1:
                raise ValueError("rate_limit must be a positive integer")
            changes["rate_limit"] = rate_limit
        new_rules = (
            None if rules is None else [r if isinstance(r, Rule) else Rule.from_dict(r) for r in rules]
        )
        with self._lock:
            self._faults.update(changes)
            if new_rules is not None:
                self._rules = new_rules
        return self.faults()

    def add_rule(self, path: str, status: int | None = None, times: int | None = None, **fields: Any) -> Rule:
        """Append a per-path rule (see the module docstring) and return it."""
        rule = Rule.from_dict({"path": path, "status": status, "times": times, **fields})
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def set_resource(self, path: str, document: Any) -> None:
        if not path.startswith("/v1/"):
            raise ValueError("resource paths start with /v1/")
        with self._lock:
            self.resources[path] = copy.deepcopy(document)

    def revoke_tokens(self, tenant: str | None = None) -> int:
        """Invalidate issued tokens (of one tenant, or all); the next API call gets a 401."""
        with self._lock:
            doomed = [t for t, (owner, _) in self._tokens.items() if tenant is None or owner == tenant]
            for token in doomed:
                del self._tokens[token]
        return len(doomed)

    def reset(self) -> None:
        """Back to the start: fault settings, no rules, empty logs, fresh rate windows and documents."""
        with self._lock:
            self._faults = dict(self._initial_faults)
            self._rules.clear()
            self._feedback.clear()
            self._writes.clear()
            self._requests.clear()
            self._windows.clear()
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
            self._send(h, method, _Response(400, {"message": "bad Content-Length"}))
            h.close_connection = True
            return
        raw = h.rfile.read(length) if length else b""
        if path.startswith(CONTROL_PREFIX):
            self._send(h, method, self._control(method, path, raw))
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
    def _send(h: _Handler, method: str, response: _Response) -> None:
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

    def _serve(self, method: str, path: str, headers: Any, raw: bytes) -> _Response:
        is_api = path.startswith("/v1/")
        if is_api:
            self._hang(self._faults["latency"])
        form: dict[str, str] = {}
        if path == TOKEN_PATH:
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            tenant = form.get("tenant_id") or None
        else:
            tenant = self._bearer_tenant(headers)

        rule = self._take_rule(method, path, tenant)
        if rule is not None:
            self._hang(rule.delay)
            if rule.status is not None:
                return self._rule_response(rule, tenant)

        if path == TOKEN_PATH:
            response = self._token(method, headers, form) if method == "POST" else _Response(405)
        elif not is_api:
            response = _Response(404, {"message": f"no such endpoint: {path}"})
        elif tenant is None:
            response = _Response(
                401,
                {"message": "a valid Bearer token is required"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        else:
            response = self._api(method, path, tenant, raw)
        response.tenant = response.tenant or tenant
        response.headers = {**self._rate_headers(response.tenant), **response.headers}
        if rule is not None:
            response.headers = _merge_headers(response.headers, rule.headers)
            response.fault = response.fault or "rule"
        return response

    def _hang(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _take_rule(self, method: str, path: str, tenant: str | None) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path, tenant):
                    rule.hits += 1
                    return rule
        return None

    def _rule_response(self, rule: Rule, tenant: str | None) -> _Response:
        status = rule.status or 200
        body = rule.body
        if body is None and status >= 400:
            body = {"message": f"injected fault: HTTP {status}"}
        headers = self._rate_headers(tenant)
        if rule.retry_after is not None:
            headers["Retry-After"] = _format_seconds(rule.retry_after)
        return _Response(status, body, _merge_headers(headers, rule.headers), tenant, "rule")

    def _draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def _api(self, method: str, path: str, tenant: str, raw: bytes) -> _Response:
        # The rate limit first: every authenticated call uses one unit, as Visma counts them.
        with self._lock:
            window = self._window(tenant)
            limit = int(self._faults["rate_limit"])
            if window.used >= limit:
                wait = self._reset_in(window)
                return _Response(
                    429,
                    {"message": "API rate limit exceeded"},
                    {"Retry-After": str(math.ceil(wait))},
                    tenant,
                    "rate_limit",
                )
            window.used += 1
        if self._draw(self._faults["timeout_rate"]):
            self._hang(self._faults["timeout_seconds"])
            fault = "timeout"
        else:
            fault = None
        if self._draw(self._faults["error_rate"]):
            return _Response(
                503, {"message": "Service temporarily unavailable (injected)"}, {}, tenant, "error"
            )
        if self._draw(self._faults["throttle_rate"]):
            return _Response(
                429, {"message": "Too many requests (injected)"}, {"Retry-After": "1"}, tenant, "throttle"
            )
        response = self._route(method, path, tenant, raw)
        response.fault = fault
        return response

    def _route(self, method: str, path: str, tenant: str, raw: bytes) -> _Response:
        if method in ("GET", "HEAD"):
            document = self._document(path)
            if document is None:
                return _Response(404, {"message": f"resource not found: {path}"})
            return _Response(200, document)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return _Response(400, {"message": "the request body is not JSON"})
        if path == FEEDBACK_PATH:
            return self._record_feedback(method, tenant, body)
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            return _Response(405, {"message": f"{method} is not supported"})
        with self._lock:
            self._writes.append(
                {"tenant": tenant, "method": method, "path": path, "body": body, "received_at": _now_iso()}
            )
        if method == "POST":
            return _Response(201, None, {"Location": path})
        return _Response(204)

    def _document(self, path: str) -> Any:
        segments = path.rstrip("/").split("/")[2:]  # after "/v1"
        if len(segments) < 2 or not all(segments):
            with self._lock:
                return copy.deepcopy(self.resources.get(path))
        entity, ids = segments[0], segments[1:]
        if any(s.lower().startswith("missing") for s in ids):
            return None
        with self._lock:
            document = self.resources.get(path)
            if document is not None:
                return copy.deepcopy(document)
        if self.synthesize:
            return {"id": "/".join(ids), "entity": entity, "synthetic": True}
        return None

    def _record_feedback(self, method: str, tenant: str, body: Any) -> _Response:
        if method != "POST":
            return _Response(405, {"message": "feedback is created with POST"})
        problems = []
        if not isinstance(body, dict):
            return _Response(400, {"message": "feedback must be a JSON object"})
        if not isinstance(body.get("notificationId"), str) or not body["notificationId"]:
            problems.append("notificationId must be a non-empty string")
        if not isinstance(body.get("isSuccess"), bool):
            problems.append("isSuccess must be true or false")
        for name in ("source", "description"):
            if body.get(name) is not None and not isinstance(body[name], str):
                problems.append(f"{name} must be a string")
        if problems:
            return _Response(400, {"message": "; ".join(problems)})
        record = {
            "tenant": tenant,
            "notificationId": body["notificationId"],
            "source": body.get("source"),
            "description": body.get("description"),
            "isSuccess": body["isSuccess"],
            "received_at": _now_iso(),
        }
        with self._lock:
            self._feedback.append(record)
        return _Response(201)

    # -- tokens and rate limits ---------------------------------------------------------

    def _token(self, method: str, headers: Any, form: dict[str, str]) -> _Response:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _Response(400, {"error": "invalid_request", "error_description": "bad Basic header"})
        if form.get("grant_type") != "client_credentials":
            return _Response(400, {"error": "unsupported_grant_type"})
        if self.client_id is not None and (
            client_id != self.client_id
            or not hmac.compare_digest((client_secret or "").encode(), (self._client_secret or "").encode())
        ):
            return _Response(401, {"error": "invalid_client"})
        tenant = form.get("tenant_id")
        if not tenant:
            return _Response(400, {"error": "invalid_request", "error_description": "tenant_id is required"})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (tenant, time.monotonic() + self.token_ttl)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        if form.get("scope"):
            body["scope"] = form["scope"]
        extra = {"client_id": client_id, "scope": form.get("scope")}  # never the secret
        return _Response(200, body, {"Cache-Control": "no-store"}, tenant, extra=extra)

    def _bearer_tenant(self, headers: Any) -> str | None:
        value = headers.get("Authorization", "")
        if not value.lower().startswith("bearer "):
            return None
        with self._lock:
            found = self._tokens.get(value[7:].strip())
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    def _window(self, tenant: str) -> _Window:
        now = time.monotonic()
        window = self._windows.get(tenant)
        if window is None or now >= window.started + self.rate_window:
            window = self._windows[tenant] = _Window(now)
        return window

    def _reset_in(self, window: _Window) -> float:
        return max(0.0, window.started + self.rate_window - time.monotonic())

    def _rate_headers(self, tenant: str | None) -> dict[str, str]:
        with self._lock:
            limit = int(self._faults["rate_limit"])
            if tenant is None:
                used, reset = 0, self.rate_window
            else:
                window = self._window(tenant)
                used, reset = window.used, self._reset_in(window)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }

    # -- control API over HTTP ----------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> _Response:
        name = path[len(CONTROL_PREFIX) :].rstrip("/")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return _Response(400, {"message": "the request body is not JSON"})
        try:
            if method == "GET":
                views = {
                    "feedback": lambda: self.feedback,
                    "requests": lambda: self.requests,
                    "writes": lambda: self.writes,
                    "faults": self.faults,
                    "health": lambda: {"ok": True},
                }
                if name in views:
                    return _Response(200, views[name]())
            elif method == "POST":
                if name == "faults":
                    return _Response(200, self._post_faults(body))
                if name == "reset":
                    self.reset()
                    return _Response(200, {"reset": True})
                if name == "revoke-tokens":
                    tenant = body.get("tenant") if isinstance(body, dict) else None
                    return _Response(200, {"revoked": self.revoke_tokens(tenant)})
                if name == "resources":
                    if not isinstance(body, dict):
                        raise ValueError("resources must be a JSON object of path → document")
                    for resource_path, document in body.items():
                        self.set_resource(resource_path, document)
                    return _Response(200, {"resources": len(self.resources)})
        except ValueError as exc:
            return _Response(400, {"message": str(exc)})
        return _Response(404, {"message": f"no such control endpoint: {method} {path}"})

    def _post_faults(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError("faults must be a JSON object")
        if "path" in body:
            self.add_rule(**body)
            return self.faults()
        unknown = set(body) - {*FAULT_SETTINGS, "rules"}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        rules = body.get("rules")
        if rules is not None and not isinstance(rules, list):
            raise ValueError("rules must be a list")
        return self.set_faults(**{k: v for k, v in body.items() if k != "rules"}, rules=rules)


def _load_fixtures(fixtures: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    if isinstance(fixtures, Mapping):
        data: Any = dict(fixtures)
    else:
        path = Path(fixtures) if fixtures is not None else DEFAULT_FIXTURES
        if fixtures is None and not path.exists():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and k.startswith("/v1/") for k in data):
        raise ValueError("fixtures must be a JSON object mapping /v1/... paths to documents")
    return copy.deepcopy(data)


def _merge_headers(base: dict[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` on top, header names compared case-insensitively."""
    lowered = {k.lower() for k in extra}
    return {**{k: v for k, v in base.items() if k.lower() not in lowered}, **extra}


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m visma_webhooks_local.sandbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--fixtures", type=Path, default=None, help="JSON file: path → document")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API call")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of API calls answered 503")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="fraction answered 429")
    parser.add_argument(
        "--timeout-rate", type=float, default=0.0, help="fraction that hang --timeout-seconds"
    )
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    parser.add_argument("--rate-limit", type=int, default=100_000, help="API calls per tenant per window")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--client-id", default=None, help="require this client id (and --client-secret)")
    parser.add_argument("--client-secret", default=None)
    parser.add_argument("--no-synthesize", action="store_true", help="404 for every path not in the fixtures")
    args = parser.parse_args(argv)
    try:
        sandbox = VismaSandbox(
            port=args.port,
            fixtures=args.fixtures,
            latency=args.latency,
            error_rate=args.error_rate,
            throttle_rate=args.throttle_rate,
            seed=args.seed,
            timeout_rate=args.timeout_rate,
            timeout_seconds=args.timeout_seconds,
            host=args.host,
            client_id=args.client_id,
            client_secret=args.client_secret,
            rate_limit=args.rate_limit,
            synthesize=not args.no_synthesize,
        )
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox.start()
    print(f"Visma sandbox listening on {sandbox.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
