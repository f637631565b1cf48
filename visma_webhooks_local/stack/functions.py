"""The real Lambda handler modules from ``functions/``, loaded and invoked outside Lambda."""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from visma_webhooks_local.stack.lambda_events import LambdaContext

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = Path(os.environ.get("VISMA_WEBHOOKS_FUNCTIONS_DIR", PROJECT_ROOT / "functions"))


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` afresh as module ``<name>_app``.

    Each call runs the module's initialisation again, as a Lambda cold start does, so
    that it picks up the environment as it is now.
    """
    path = FUNCTIONS_DIR / name / "app.py"
    module_name = f"{name}_app"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no Lambda function at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_functions(
    name: str, count: int, env: Mapping[str, str], log_stream: TextIO | None
) -> list[ModuleType]:
    """``count`` cold-started instances of ``functions/<name>/app.py`` under ``env``.

    Each instance stands for one Lambda execution environment: it serves one invocation
    at a time. The environment stays set afterwards (the modules read it at call time too).
    """
    os.environ.update(env)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(k, None)
    modules = [load_function(name) for _ in range(count)]
    if log_stream is not None:
        for module in modules:
            handler = getattr(getattr(module, "logger", None), "registered_handler", None)
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(log_stream)
    return modules


class FunctionPool:
    """Instances of the ingest function; an invocation takes a free instance, as Lambda picks an idle one.

    Invocations run one at a time, whatever the instances: Powertools' event handler keeps
    the current event on its class (``BaseRouter.current_event``), which is safe in Lambda,
    where a process serves one invocation at a time, but is shared by every instance in
    this one process, so two concurrent invocations could each answer the other's request.
    """

    def __init__(self, modules: list[ModuleType], function_name: str, timeout: float):
        self._free: queue.Queue[ModuleType] = queue.Queue()
        for module in modules:
            self._free.put(module)
        self.function_name = function_name
        self.timeout = timeout
        self._one_at_a_time = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        module = self._free.get()
        try:
            with self._one_at_a_time:
                result: dict[str, Any] = module.handler(
                    event, LambdaContext(self.function_name, self.timeout)
                )
            return result
        finally:
            self._free.put(module)
