"""Clients and function environments for the emulated AWS, with fake credentials only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_secretsmanager import SecretsManagerClient
    from types_boto3_sqs import SQSClient

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - what moto accepts, never a real key

Service = Literal["sqs", "dynamodb", "secretsmanager"]


def local_session(region: str = REGION) -> boto3.session.Session:
    """A session with fake credentials: a local endpoint never sees the user's real ones."""
    return boto3.session.Session(
        region_name=region,
        aws_access_key_id=FAKE_ACCESS_KEY_ID,
        aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
    )


@overload
def client(
    service: Literal["sqs"], endpoint_url: str | None, region: str = ..., **config: Any
) -> SQSClient: ...
@overload
def client(
    service: Literal["dynamodb"], endpoint_url: str | None, region: str = ..., **config: Any
) -> DynamoDBClient: ...
@overload
def client(
    service: Literal["secretsmanager"], endpoint_url: str | None, region: str = ..., **config: Any
) -> SecretsManagerClient: ...
def client(
    service: Service, endpoint_url: str | None, region: str = REGION, **config: Any
) -> SQSClient | DynamoDBClient | SecretsManagerClient:
    """A client for the emulated AWS at ``endpoint_url``."""
    return local_session(region).client(
        service,
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32, **config),
    )


def aws_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """What every function module needs to talk to the emulated AWS (and never to a real one)."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "POWERTOOLS_METRICS_DISABLED": "true",  # EMF would print to stdout; the console is for people
    }
