"""boto3 clients for the built-in handlers, made on first use and shared by threads.

boto3 is imported on first use: only the handlers that talk to AWS pay for it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_boto3_events import EventBridgeClient
    from types_boto3_s3 import S3Client


@cache
def s3() -> S3Client:
    import boto3

    from visma_webhooks.adapters.aws import SDK_CONFIG

    return boto3.client("s3", config=SDK_CONFIG)


@cache
def events() -> EventBridgeClient:
    import boto3

    from visma_webhooks.adapters.aws import SDK_CONFIG

    return boto3.client("events", config=SDK_CONFIG)


def clear() -> None:
    """Forget the clients (a test that changes the environment makes new ones)."""
    s3.cache_clear()
    events.cache_clear()
