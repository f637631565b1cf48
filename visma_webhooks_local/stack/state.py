"""The state file: where a running local stack is, for the commands run beside it.

It holds no secret: the secrets live in the stack's Secrets Manager.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from visma_webhooks_local.stack import aws

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_secretsmanager import SecretsManagerClient
    from types_boto3_sqs import SQSClient

STATE_ENV = "VISMA_WEBHOOKS_STATE"
DEFAULT_STATE_FILE = Path(".visma-webhooks") / "local.json"


class StackError(RuntimeError):
    """The local stack cannot start or cannot be found."""


def state_path(path: str | Path | None = None) -> Path:
    """The state file: ``path``, else ``$VISMA_WEBHOOKS_STATE``, else ``.visma-webhooks/local.json``."""
    return Path(path or os.environ.get(STATE_ENV) or DEFAULT_STATE_FILE)


@dataclass
class StackState:
    """Where a running local stack is (written by ``local``, read by the other commands)."""

    pid: int
    started_at: str
    region: str
    aws_endpoint_url: str
    stack_name: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    table_name: str
    webhook_secret_arn: str
    visma_secret_arn: str
    webhook_url: str
    visma_base_url: str
    token_url: str
    sandbox_url: str | None
    max_receive_count: int
    processor: dict[str, Any] = field(default_factory=dict)  # timeout, mapping, environment
    visma_service_urls: dict[str, str] = field(default_factory=dict)  # by service, when not the template's

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path | None = None) -> StackState:
        file = state_path(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StackError(
                f"no local stack found ({file} does not exist): start one with `visma-webhooks local`"
            ) from None
        except ValueError as exc:
            raise StackError(f"{file} is not a state file: {exc}") from None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)

    @overload
    def client(self, service: Literal["sqs"]) -> SQSClient: ...
    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["secretsmanager"]) -> SecretsManagerClient: ...
    def client(self, service: aws.Service) -> SQSClient | DynamoDBClient | SecretsManagerClient:
        return aws.client(service, self.aws_endpoint_url, self.region)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
