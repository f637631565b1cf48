"""The ``visma-webhooks`` command line: local stack, sending, replay, status, inspect, reconcile, backfill, demo.

:mod:`.app` holds the Typer app; each command is a module of its own, imported here so
that it is registered; :mod:`.rendering` builds what they print.
"""

from visma_webhooks_local.cli import (  # noqa: F401 - registers them
    backfill,
    demo,
    inspect,
    local,
    process,
    reconcile,
    replay,
    send,
    status,
)
from visma_webhooks_local.cli.app import app, main

__all__ = ["app", "main"]
