"""Talking to the embedded Visma sandbox as a client would (a token for a tenant, its header), and receiving its webhooks."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from visma_webhooks_local.sandbox import VismaSandbox

TENANT = "1262489"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def token(sb: VismaSandbox, http: requests.Session, tenant: str = TENANT, **form: str) -> str:
    data = {
        "grant_type": "client_credentials",
        "client_id": "id",
        "client_secret": "secret",
        "tenant_id": tenant,
    }
    response = http.post(sb.token_url, data={**data, **form}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


class Receiver:
    """A webhook endpoint on loopback that records every delivery (headers, raw body) and answers ``status``."""

    def __init__(self, status: int = 202):
        self.status = status
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self._cond = threading.Condition()
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/visma"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        """The first ``count`` deliveries, once they have arrived."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise AssertionError(f"{len(self.deliveries)} of {count} deliveries arrived")
            return list(self.deliveries)
