"""The soak's Visma: the embedded sandbox with injected faults, knowing which process posted each feedback."""

from __future__ import annotations

import copy
import fnmatch
import random
import threading
import time
from typing import Any

from benchmarks.soak.plan import SoakConfig
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.sandbox.responses import TOKEN_PATH, Response
from visma_webhooks_local.sandbox.services import SandboxService

CLIENT_ID, CLIENT_SECRET = "soak-client", "soak-client-secret"
# Any service's path: a legacy sales order is fetched from SalesOrders V3 (/api/v3/SalesOrders/SO/<id>).
OUTAGE_RULE = "/*/outage-*"
REFUSED = "/*/refused-*"
# Shared with benchmarks.soak_handlers, which is not imported here: importing it registers
# its handler and tags the Visma client's User-Agent in this process too.
PID_TAG = "soak-pid/"


class _TaggedFeedback(list[dict[str, Any]]):
    """The sandbox's feedback log: each post recorded with the processor process that made it."""

    def __init__(self, who: threading.local):
        super().__init__()
        self.who = who

    def append(self, record: dict[str, Any]) -> None:
        super().append({**record, "pid": getattr(self.who, "pid", None), "at": time.time()})

    def __deepcopy__(self, memo: dict[int, Any]) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self), memo)


class FaultyVisma(VismaSandbox):
    """The embedded sandbox with the soak's faults, and the processor process behind each feedback.

    A drawn fault applies to the token endpoint and to every API call. A timeout holds
    the request for ``hang_seconds`` (longer than any read timeout the processor can use
    within its own timeout) and then answers 504 without acting on it, as a gateway that
    gave up before the backend saw the request. A ``refused-*`` resource answers 403
    (after any drawn fault), before and after the fix: a permanent refusal, not a fault.
    """

    def __init__(self, config: SoakConfig, hang_seconds: float):
        super().__init__(
            port=0,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            seed=config.seed,
            # The processor's window too; the default limit is far away until the mass update sets one.
            rate_window=config.window_seconds,
        )
        error, throttle, timeout = (config.fault_rate * s for s in config.fault_shares)
        self.thresholds = (error, error + throttle, error + throttle + timeout)
        self.hang_seconds = hang_seconds
        self.faulty = True
        self._fault_rng = random.Random(config.seed * 7 + 1)
        self._who = threading.local()
        self._feedback = _TaggedFeedback(self._who)
        self.add_rule(OUTAGE_RULE, status=503)

    def fix(self) -> None:
        """No more injected faults, and the outage is over."""
        self.faulty = False
        self.clear_rules()

    def _serve(self, svc: SandboxService, method: str, path: str, headers: Any, raw: bytes) -> Response:
        self._who.pid = pid_from_user_agent(headers.get("User-Agent"))
        if self.faulty and (path == TOKEN_PATH or svc.api.match(path)):
            fault = self._fault()
            if fault is not None:
                return fault
        if fnmatch.fnmatchcase(path, REFUSED):
            return Response(403, {"message": f"access to {path} is denied"}, fault="refused")
        return super()._serve(svc, method, path, headers, raw)

    def _fault(self) -> Response | None:
        """The injected answer of one draw: a 5xx, a 429, a timeout, or None (no fault)."""
        with self._lock:
            draw = self._fault_rng.random()
            status = self._fault_rng.choice((500, 502, 503, 504))
        error, throttle, timeout = self.thresholds
        if draw < error:
            return Response(status, {"message": f"injected HTTP {status}"}, fault="5xx")
        if draw < throttle:
            return Response(429, {"message": "injected throttling"}, {"Retry-After": "1"}, fault="429")
        if draw < timeout:
            self._hang(self.hang_seconds)
            return Response(504, {"message": "injected timeout"}, fault="timeout")
        return None


def pid_from_user_agent(value: str | None) -> int | None:
    """The processor process that sent a request (``soak-pid/<pid>`` in its User-Agent)."""
    tail = (value or "").partition(PID_TAG)[2].split(" ", 1)[0]
    return int(tail) if tail.isdigit() else None
