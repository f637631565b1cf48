"""boto3 clients for the built-in handlers, made on first use and shared by threads."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3  # deferred: only the handlers that talk to AWS pay for it

    from visma_webhooks.adapters.aws import SDK_CONFIG

    return boto3.client(service, config=SDK_CONFIG)
