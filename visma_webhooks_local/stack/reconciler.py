"""The ReconcilerFunction in the local stack: on an interval, or one invocation on request.

The function runs as it does in Lambda (``functions/reconciler/app.py``, its module
initialised under the stack's environment), with the processor's Visma, table and queue
settings, which are the reconciler's too (the template sets both alike). The schedule is
a thread that invokes it every ``interval`` seconds; ``visma-webhooks reconcile`` and
``visma-webhooks backfill`` invoke it once from their own process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, TextIO

from visma_webhooks_local.stack import aws
from visma_webhooks_local.stack.functions import load_functions
from visma_webhooks_local.stack.lambda_events import LambdaContext
from visma_webhooks_local.stack.state import StackState

log = logging.getLogger(__name__)

FUNCTION_NAME = "ReconcilerFunction"
TIMEOUT_SECONDS = 300.0  # the template's
LOCAL_SETTLE_SECONDS = 5  # locally webhooks arrive within seconds: a change older than this is missed


def environment(state: StackState, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The reconciler's environment for the local stack named by ``state``."""
    return {
        **aws.aws_environment(state.aws_endpoint_url, state.region),
        **state.processor.get("environment", {}),
        "QUEUE_URL": state.queue_url,
        "IDEMPOTENCY_TABLE": state.table_name,
        "RECONCILE_SETTLE_SECONDS": str(LOCAL_SETTLE_SECONDS),
        **(overrides or {}),
    }


def load(
    state: StackState, overrides: Mapping[str, str] | None = None, log_stream: TextIO | None = None
) -> ModuleType:
    """The reconciler function, cold-started under the stack's environment."""
    (module,) = load_functions("reconciler", 1, environment(state, overrides), log_stream)
    return module


def invoke(module: ModuleType, event: Mapping[str, Any], timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    result: dict[str, Any] = module.handler(dict(event), LambdaContext(FUNCTION_NAME, timeout))
    return result


class Schedule:
    """Invokes the reconciler every ``interval`` seconds until stopped (the template's schedule)."""

    def __init__(
        self,
        module: ModuleType,
        interval: float,
        stop: threading.Event,
        report: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.module = module
        self.interval = interval
        self.stop_event = stop
        self.report = report
        self.runs = 0
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> Schedule:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                result = invoke(self.module, {})
            except Exception:  # as in Lambda: the invocation failed, the next one runs on schedule
                log.exception("reconciler invocation failed")
                continue
            self.runs += 1
            if self.report is not None:
                self.report(result)
