"""The local stack: the whole pipeline on one machine (``visma-webhooks local``).

* AWS: moto's server on loopback (or ``aws_endpoint_url``), with the queue, DLQ, table
  and secrets created as ``template.yaml`` declares them (see :mod:`.spec`).
* ``POST http://127.0.0.1:PORT/webhooks/visma`` calls the real ingest function
  (:mod:`.webhook_server`).
* The SQS event source mapping is emulated by pollers that call the real processor
  function (:mod:`.poller`); with ``processor=False`` another process runs them
  (``visma-webhooks process``, :func:`attach`), so that processing can be stopped, killed
  and restarted while the stack keeps its queues.
* Visma: the configured API and Visma Connect, or the embedded sandbox.

A small state file (default ``.visma-webhooks/local.json``) tells the other commands
where everything is. It holds no secret: the secrets live in the stack's Secrets Manager.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets as pysecrets
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from visma_webhooks.adapters.dynamodb import DynamoDBOutcomeStore
from visma_webhooks_local.functions import load_function
from visma_webhooks_local.poller import Poller, PollerConfig, Report, join_all
from visma_webhooks_local.spec import StackSpec
from visma_webhooks_local.template import DEFAULT_TEMPLATE, ResourceRef, Template

log = logging.getLogger(__name__)

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"
STACK_NAME = "visma-webhooks-local"
STATE_ENV = "VISMA_WEBHOOKS_STATE"
DEFAULT_STATE_FILE = Path(".visma-webhooks") / "local.json"
DEFAULT_WEBHOOK_SECRET = "local-demo-secret"  # noqa: S105 - the documented local default
DEFAULT_TOKEN_URL = "https://connect.visma.com/connect/token"  # noqa: S105 - a URL
DEFAULT_SCOPE = "vismanet_erp_service_api:read vismanet_erp_service_api:create"
LOCAL_RETRY_BASE_SECONDS = 1.0
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class StackError(RuntimeError):
    """The local stack cannot start or cannot be found."""


# -- AWS clients --------------------------------------------------------------------------


def local_session(region: str = REGION) -> boto3.session.Session:
    """A session with fake credentials: a local endpoint never sees the user's real ones."""
    return boto3.session.Session(region_name=region, **FAKE_CREDENTIALS)


def client(service: str, endpoint_url: str | None, region: str = REGION, **config: Any) -> Any:
    """A client for the emulated AWS at ``endpoint_url``."""
    return local_session(region).client(
        service,
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32, **config),
    )


# -- state file ---------------------------------------------------------------------------


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

    def client(self, service: str) -> Any:
        return client(service, self.aws_endpoint_url, self.region)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- resources ----------------------------------------------------------------------------


@dataclass
class Resources:
    """The physical resources made for the template's logical ones."""

    names: dict[str, str]  # logical id → physical name (queue name, table name, secret name)
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    table_name: str
    webhook_secret_arn: str
    visma_secret_arn: str
    _refs: dict[tuple[str, str | None], str] = field(default_factory=dict)

    def physical(self, ref: ResourceRef) -> str | None:
        """What ``!Ref``/``!GetAtt`` of a created resource evaluates to, if known."""
        return self._refs.get((ref.logical_id, ref.attribute))


def create_resources(
    spec: StackSpec,
    sqs: Any,
    dynamodb: Any,
    secretsmanager: Any,
    *,
    stack_name: str,
    webhook_secrets: list[str],
    visma_credentials: Mapping[str, Any],
) -> Resources:
    """Create (or reuse) the DLQ, the queue with its redrive policy, the table and the secrets."""
    names = {
        logical: f"{stack_name}-{logical}"
        for logical in (spec.queue.logical_id, spec.dlq.logical_id, spec.table.logical_id)
    }
    dlq_url = _queue(sqs, names[spec.dlq.logical_id], spec.dlq.attributes)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec.max_receive_count)})
    queue_url = _queue(sqs, names[spec.queue.logical_id], {**spec.queue.attributes, "RedrivePolicy": redrive})
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    table = names[spec.table.logical_id]
    table_arn = _table(dynamodb, table, spec)
    webhook_arn = _secret(secretsmanager, f"{stack_name}/{spec.webhook_secret}", json.dumps(webhook_secrets))
    visma_arn = _secret(
        secretsmanager, f"{stack_name}/{spec.visma_secret}", json.dumps(dict(visma_credentials))
    )
    refs = {
        (spec.queue.logical_id, None): queue_url,
        (spec.queue.logical_id, "Arn"): queue_arn,
        (spec.queue.logical_id, "QueueName"): names[spec.queue.logical_id],
        (spec.queue.logical_id, "QueueUrl"): queue_url,
        (spec.dlq.logical_id, None): dlq_url,
        (spec.dlq.logical_id, "Arn"): dlq_arn,
        (spec.dlq.logical_id, "QueueName"): names[spec.dlq.logical_id],
        (spec.dlq.logical_id, "QueueUrl"): dlq_url,
        (spec.table.logical_id, None): table,
        (spec.table.logical_id, "Arn"): table_arn,
        (spec.webhook_secret, None): webhook_arn,
        (spec.webhook_secret, "Id"): webhook_arn,
        (spec.visma_secret, None): visma_arn,
        (spec.visma_secret, "Id"): visma_arn,
    }
    return Resources(names, queue_url, queue_arn, dlq_url, dlq_arn, table, webhook_arn, visma_arn, refs)


def _queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if "QueueAlreadyExists" not in str(exc) and "QueueNameExists" not in str(exc):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url


def _table(dynamodb: Any, name: str, spec: StackSpec) -> str:
    try:
        description = dynamodb.create_table(
            TableName=name,
            KeySchema=spec.table.key_schema,
            AttributeDefinitions=spec.table.attribute_definitions,
            BillingMode="PAY_PER_REQUEST",
        )["TableDescription"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
        description = dynamodb.describe_table(TableName=name)["Table"]
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if spec.table.ttl_attribute:
        with contextlib.suppress(ClientError):  # already enabled on a reused table
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.table.ttl_attribute},
            )
    return description["TableArn"]


def _secret(secretsmanager: Any, name: str, value: str) -> str:
    try:
        return secretsmanager.create_secret(Name=name, SecretString=value)["ARN"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceExistsException":
            raise
        return secretsmanager.put_secret_value(SecretId=name, SecretString=value)["ARN"]


# -- function environments ----------------------------------------------------------------


def function_environment(
    declared: Mapping[str, Any], resources: Resources, overrides: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The template's variables with resource references made local, then ``overrides``.

    Returns the environment and the names of variables left out (references to resources
    the local stack does not create).
    """
    environment: dict[str, str] = {}
    skipped: list[str] = []
    for name, value in declared.items():
        if isinstance(value, ResourceRef):
            physical = resources.physical(value)
            if physical is None:
                skipped.append(name)
                continue
            value = physical
        environment[name] = str(value)
    environment.update(overrides)
    return environment, skipped


def aws_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """What every function module needs to talk to the emulated AWS (and never to a real one)."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "POWERTOOLS_METRICS_DISABLED": "true",  # EMF would print to stdout; the console is for people
    }


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
    """Instances of one function; an invocation takes a free instance, as Lambda picks an idle environment."""

    def __init__(self, modules: list[ModuleType], function_name: str, timeout: float):
        self._free: queue.Queue[ModuleType] = queue.Queue()
        for module in modules:
            self._free.put(module)
        self.function_name = function_name
        self.timeout = timeout

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        from visma_webhooks_local.lambda_events import LambdaContext

        module = self._free.get()
        try:
            return module.handler(event, LambdaContext(self.function_name, self.timeout))
        finally:
            self._free.put(module)


# -- the stack ----------------------------------------------------------------------------


@dataclass
class VismaOptions:
    """Where the processor finds Visma; all None means the embedded sandbox."""

    base_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = DEFAULT_SCOPE

    @property
    def external(self) -> bool:
        return bool(self.base_url)


@dataclass
class SandboxOptions:
    latency: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    port: int = 0


@dataclass
class LocalOptions:
    port: int = 3000
    host: str = "127.0.0.1"
    visma: VismaOptions = field(default_factory=VismaOptions)
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)
    webhook_secrets: list[str] = field(default_factory=lambda: [DEFAULT_WEBHOOK_SECRET])
    max_receive_count: int | None = None
    visibility_timeout: int | None = None
    processor_timeout: float | None = None
    retry_base_seconds: float = LOCAL_RETRY_BASE_SECONDS
    aws_endpoint_url: str | None = None
    handler_modules: str | None = None
    processor: bool = True
    pollers: int = 1
    ingest_instances: int = 4
    template: Path = DEFAULT_TEMPLATE
    state_file: Path = DEFAULT_STATE_FILE
    function_log: Path | None = None  # None: the functions' logs go to stderr
    stack_name: str = STACK_NAME


class LocalStack:
    """Starts and stops every part of the local stack; see the module docstring."""

    def __init__(
        self,
        options: LocalOptions,
        *,
        report: Report | None = None,
        on_delivery: Callable[[int, dict[str, Any] | None], None] | None = None,
    ):
        self.options = options
        self.report = report
        self.on_delivery = on_delivery
        self.stop_event = threading.Event()
        self.moto: Any = None
        self.sandbox: Any = None
        self.server: Any = None
        self.pollers: list[Poller] = []
        self.state: StackState | None = None
        self.spec: StackSpec | None = None
        self.skipped_variables: list[str] = []
        self._log_stream: TextIO | None = None
        self._log_handler: logging.Handler | None = None

    # -- start --------------------------------------------------------------------------

    def start(self) -> StackState:
        o = self.options
        path = state_path(o.state_file)
        existing = None
        with contextlib.suppress(StackError):  # none, or not a state file: it will be replaced
            existing = StackState.load(path)
        if existing is not None and existing.alive and existing.pid != os.getpid():
            raise StackError(
                f"a local stack is already running (pid {existing.pid}, {path}); stop it or pass another --state-file"
            )
        try:
            return self._start(path)
        except BaseException:
            self.stop()
            raise

    def _start(self, path: Path) -> StackState:
        o = self.options
        self._open_logs()
        template = Template.from_file(
            o.template, stack_name=o.stack_name, region=REGION, account_id=ACCOUNT_ID
        )
        spec = self.spec = StackSpec.from_template(
            template,
            max_receive_count=o.max_receive_count,
            visibility_timeout=o.visibility_timeout,
            processor_timeout=o.processor_timeout,
        )

        endpoint = o.aws_endpoint_url or self._start_moto()
        sqs, dynamodb = client("sqs", endpoint), client("dynamodb", endpoint)

        visma = o.visma
        if visma.external:
            base_url, token_url = visma.base_url.rstrip("/"), visma.token_url or DEFAULT_TOKEN_URL
            credentials = {"client_id": visma.client_id, "client_secret": visma.client_secret}
            sandbox_url = None
        else:
            credentials = {"client_id": "local-client", "client_secret": pysecrets.token_urlsafe(18)}
            self.sandbox = self._start_sandbox(credentials)
            base_url, token_url, sandbox_url = self.sandbox.url, self.sandbox.token_url, self.sandbox.url
        if visma.scope:
            credentials["scope"] = visma.scope

        resources = create_resources(
            spec,
            sqs,
            dynamodb,
            client("secretsmanager", endpoint),
            stack_name=o.stack_name,
            webhook_secrets=list(o.webhook_secrets),
            visma_credentials=credentials,
        )
        aws_env = aws_environment(endpoint, REGION)
        ingest_env, skipped_ingest = function_environment(
            spec.ingest.environment,
            resources,
            {
                **aws_env,
                "QUEUE_URL": resources.queue_url,
                "DLQ_URL": resources.dlq_url,
                "WEBHOOK_SECRET_ARN": resources.webhook_secret_arn,
                "ALLOWED_SOURCE_IPS": "",  # requests come from loopback, never from Visma's addresses
            },
        )
        processor_overrides = {
            **aws_env,
            "QUEUE_URL": resources.queue_url,
            "IDEMPOTENCY_TABLE": resources.table_name,
            "VISMA_CLIENT_SECRET_ARN": resources.visma_secret_arn,
            "VISMA_API_BASE_URL": base_url,
            "VISMA_TOKEN_URL": token_url,
            "MAX_RECEIVE_COUNT": str(spec.max_receive_count),
            "RETRY_BASE_SECONDS": str(o.retry_base_seconds),
        }
        if o.handler_modules:
            processor_overrides["HANDLER_MODULES"] = o.handler_modules
        processor_env, skipped_processor = function_environment(
            spec.processor.environment, resources, processor_overrides
        )
        self.skipped_variables = sorted(set(skipped_ingest + skipped_processor))

        ingest = FunctionPool(
            load_functions("ingest", max(1, o.ingest_instances), ingest_env, self._log_stream),
            spec.ingest.logical_id,
            spec.ingest.timeout,
        )
        from visma_webhooks_local.webhook_server import WebhookServer

        self.server = WebhookServer(ingest.invoke, o.host, o.port, observe=self.on_delivery).start()

        self.state = StackState(
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            region=REGION,
            aws_endpoint_url=endpoint,
            stack_name=o.stack_name,
            queue_url=resources.queue_url,
            queue_arn=resources.queue_arn,
            dlq_url=resources.dlq_url,
            dlq_arn=resources.dlq_arn,
            table_name=resources.table_name,
            webhook_secret_arn=resources.webhook_secret_arn,
            visma_secret_arn=resources.visma_secret_arn,
            webhook_url=self.server.url,
            visma_base_url=base_url,
            token_url=token_url,
            sandbox_url=sandbox_url,
            max_receive_count=spec.max_receive_count,
            processor={
                "function_name": spec.processor.logical_id,
                "timeout": spec.processor.timeout,
                "batch_size": spec.mapping.batch_size,
                "batching_window": spec.mapping.batching_window,
                "visibility_timeout": int(spec.queue.attributes.get("VisibilityTimeout", "30")),
                "environment": {k: v for k, v in processor_env.items() if k not in aws_env},
            },
        )
        if o.processor:
            self.pollers = start_pollers(
                self.state, processor_env, o.pollers, self.stop_event, self.report, self._log_stream
            )
        self.state.save(path)
        self._state_path = path
        return self.state

    def _open_logs(self) -> None:
        o = self.options
        if o.function_log is not None:
            o.function_log.parent.mkdir(parents=True, exist_ok=True)
            self._log_stream = open(o.function_log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        stream = self._log_stream or sys.stderr
        self._log_handler = logging.StreamHandler(stream)
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._log_handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        for noisy in ("werkzeug", "botocore", "urllib3", "moto"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    def _start_moto(self) -> str:
        from moto.server import ThreadedMotoServer

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        return f"http://{host}:{port}"

    def _start_sandbox(self, credentials: Mapping[str, str]) -> Any:
        from visma_webhooks_local.sandbox import VismaSandbox

        s = self.options.sandbox
        return VismaSandbox(
            port=s.port,
            latency=s.latency,
            error_rate=s.error_rate,
            throttle_rate=s.throttle_rate,
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
        ).start()

    # -- stop ---------------------------------------------------------------------------

    def stop(self, grace: float | None = None, abandon: threading.Event | None = None) -> bool:
        """Stop everything; in-flight batches get ``grace`` seconds (default: the processor timeout)
        or until ``abandon`` is set.

        Returns False if a batch had to be abandoned (its messages return after their visibility).
        """
        clean = True
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.stop_event.set()
        if self.pollers:
            timeout = grace if grace is not None else (self.spec.processor.timeout if self.spec else 30.0) + 2
            clean = join_all(self.pollers, timeout, abandon)
            self.pollers = []
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.moto is not None:
            with contextlib.suppress(Exception):
                self.moto.stop()
            self.moto = None
        path = getattr(self, "_state_path", None)
        if path is not None:
            with contextlib.suppress(StackError, OSError):
                if StackState.load(path).pid == os.getpid():
                    path.unlink()
        # An abandoned batch still runs in its thread until the process exits: it keeps the
        # function log, so that what it logs meanwhile neither goes astray nor fails to write.
        if clean and self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        if clean and self._log_stream is not None:
            self._log_stream.close()
            self._log_stream = None
        return clean


def start_pollers(
    state: StackState,
    processor_env: Mapping[str, str],
    count: int,
    stop: threading.Event,
    report: Report | None,
    log_stream: TextIO | None,
) -> list[Poller]:
    """Load ``count`` processor instances and start one poller for each."""
    p = state.processor
    modules = load_functions("processor", max(1, count), processor_env, log_stream)
    config = PollerConfig(
        queue_url=state.queue_url,
        queue_arn=state.queue_arn,
        region=state.region,
        function_name=p.get("function_name", "ProcessorFunction"),
        timeout=float(p.get("timeout", 30)),
        batch_size=int(p.get("batch_size", 10)),
        batching_window=float(p.get("batching_window", 0)),
        max_receive_count=state.max_receive_count,
    )
    sqs = state.client("sqs")
    outcomes = DynamoDBOutcomeStore(state.table_name, state.client("dynamodb"), 0)
    return [
        Poller(
            config, sqs, module.handler, outcomes=outcomes, report=report, stop=stop, name=f"poller-{i + 1}"
        ).start()
        for i, module in enumerate(modules)
    ]


def attach(
    state: StackState,
    *,
    pollers: int = 1,
    stop: threading.Event,
    report: Report | None = None,
    log_stream: TextIO | None = None,
    processor_timeout: float | None = None,
) -> list[Poller]:
    """Run the processor against a running local stack (``visma-webhooks process``)."""
    if processor_timeout is not None:
        state.processor["timeout"] = processor_timeout
    env = {**aws_environment(state.aws_endpoint_url, state.region), **state.processor.get("environment", {})}
    return start_pollers(state, env, pollers, stop, report, log_stream)
