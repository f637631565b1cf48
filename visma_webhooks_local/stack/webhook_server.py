"""``POST /webhooks/visma`` on loopback, as API Gateway (HTTP API) would call the ingest function.

Each request becomes a payload v2.0 event with the raw body, the headers (lower-cased,
repeated headers joined with commas, as API Gateway does) and the client's address; the
function's answer (status, headers, body) goes back unchanged. Other routes answer 404
``{"message":"Not Found"}`` and an unhandled error 500, as API Gateway answers them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from visma_webhooks_local.stack.lambda_events import http_api_event

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/visma"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload limit

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Observer = Callable[[int, dict[str, Any] | None], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class WebhookServer:
    """A threaded HTTP server that hands each webhook request to ``invoke`` (the ingest function).

    ``observe(status, body)`` is called for each webhook request, before its answer is sent.
    """

    def __init__(
        self, invoke: Invoke, host: str = "127.0.0.1", port: int = 0, observe: Observer | None = None
    ):
        self.invoke = invoke
        self.observe = observe
        handler = type("WebhookHandler", (_Handler,), {"owner": self})
        self.host = host
        self._server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{WEBHOOK_PATH}"

    def start(self) -> WebhookServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="webhook-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests; requests being handled finish on their own threads."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "visma-webhooks-local"
    owner: WebhookServer

    def do_POST(self) -> None:
        if urlsplit(self.path).path != WEBHOOK_PATH:
            self._not_found()
            return
        body = self._read_body()
        if body is None:
            return
        headers = {
            name.lower(): ", ".join(self.headers.get_all(name) or []) for name in set(self.headers.keys())
        }
        event = http_api_event(body, headers, path=WEBHOOK_PATH, source_ip=self.client_address[0])
        query = urlsplit(self.path).query
        if query:
            event["rawQueryString"] = query
        # Each delivery is observed before its answer goes out: whoever has the answer can
        # count on the observer having seen it.
        try:
            result = self.owner.invoke(event)
        except Exception:
            log.exception("the ingest function failed")
            self._observe(500, None)
            self._reply(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
            return
        status = int(result.get("statusCode", 200))
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
        parsed = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(payload) if payload else None
        self._observe(status, parsed if isinstance(parsed, dict) else None)
        self._reply(status, {str(k): str(v) for k, v in (result.get("headers") or {}).items()}, payload)

    def _not_found(self) -> None:
        self._discard_body()
        self._reply(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_found

    def do_HEAD(self) -> None:
        self._reply(404, {"content-type": "application/json"}, b"")

    def _observe(self, status: int, body: dict[str, Any] | None) -> None:
        if self.owner.observe is not None:
            try:
                self.owner.observe(status, body)
            except Exception:  # the console must never break a delivery
                log.exception("could not report the delivery")

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_PAYLOAD_BYTES:
                    self._too_large()
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._reply(400, {"content-type": "application/json"}, b'{"message":"Bad Request"}')
            self.close_connection = True
            return None
        if length > MAX_PAYLOAD_BYTES:
            self._too_large()
            return None
        return self.rfile.read(length) if length else b""

    def _too_large(self) -> None:
        self._reply(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
        self.close_connection = True

    def _discard_body(self) -> None:
        with contextlib.suppress(ValueError):
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= MAX_PAYLOAD_BYTES:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("webhook server: " + format, *args)
