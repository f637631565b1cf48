"""The ``visma-webhooks`` command line: local stack, sending, replay, status, inspect, demo.

:mod:`.app` holds the Typer app; each command is a module of its own, imported here so
that it is registered; :mod:`.rendering` builds what they print.
"""

from visma_webhooks_local.cli import demo, inspect, local, process, replay, send, status  # noqa: F401 - registers them
from visma_webhooks_local.cli.app import app, main

__all__ = ["app", "main"]
