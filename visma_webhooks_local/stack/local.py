"""The local stack: the whole pipeline on one machine (``visma-webhooks local``).

* AWS: moto's server on loopback (or ``aws_endpoint_url``), with the queue, DLQ, table
  and secrets created as ``template.yaml`` declares them (see :mod:`.spec`).
* ``POST http://127.0.0.1:PORT/webhooks/visma`` calls the real ingest function
  (:mod:`.webhook_server`).
* The SQS event source mapping is emulated by pollers that call the real processor
  function (:mod:`.poller`); with ``processor=False`` another process runs them
  (``visma-webhooks process``, :func:`attach`), so that processing can be stopped, killed
  and restarted while the stack keeps its queues.
* Visma: the configured API services and Visma Connect, or the embedded sandbox, whose
  every service the processor is pointed at, and whose webhooks (write-backs, events)
  come to the stack's webhook URL signed with its first webhook secret.

A small state file (default ``.visma-webhooks/local.json``, see :mod:`.state`) tells the
other commands where everything is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets as pysecrets
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks_local.stack import aws, reconciler
from visma_webhooks_local.stack.functions import FunctionPool, load_functions
from visma_webhooks_local.stack.options import (
    DEFAULT_TOKEN_URL,
    SANDBOX_CLIENT_ID,
    SERVICE_SCOPE_VARIABLES,
    SERVICE_URL_VARIABLES,
    LocalOptions,
)
from visma_webhooks_local.stack.poller import FairShare, Poller, PollerConfig, Report, join_all
from visma_webhooks_local.stack.reconciler import Schedule
from visma_webhooks_local.stack.resources import Resources, create_resources, function_environment
from visma_webhooks_local.stack.spec import StackSpec
from visma_webhooks_local.stack.state import StackError, StackState, state_path
from visma_webhooks_local.stack.template import Template
from visma_webhooks_local.stack.webhook_server import WebhookServer

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

    from visma_webhooks_local.sandbox import VismaSandbox

log = logging.getLogger(__name__)


@dataclass
class _Visma:
    """Where the processor finds Visma, and the credentials the stack's secret holds for it.

    ``service_urls``: each service's base URL by service name, where not the template's.
    """

    base_url: str
    token_url: str
    sandbox_url: str | None
    credentials: dict[str, str | None]
    service_urls: dict[str, str]


@dataclass
class _Environments:
    aws: dict[str, str]
    ingest: dict[str, str]
    processor: dict[str, str]
    skipped: list[str]  # variables naming resources the local stack does not create


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
        self.moto: ThreadedMotoServer | None = None
        self.sandbox: VismaSandbox | None = None
        self.server: WebhookServer | None = None
        self.pollers: list[Poller] = []
        self.reconciler: Schedule | None = None
        self.state: StackState | None = None
        self.spec: StackSpec | None = None
        self.skipped_variables: list[str] = []
        self._state_path: Path | None = None
        self._log_stream: TextIO | None = None
        self._log_handler: logging.Handler | None = None

    # -- start --------------------------------------------------------------------------

    def start(self) -> StackState:
        path = state_path(self.options.state_file)
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
            o.template, stack_name=o.stack_name, region=aws.REGION, account_id=aws.ACCOUNT_ID
        )
        spec = self.spec = StackSpec.from_template(
            template,
            max_receive_count=o.max_receive_count,
            visibility_timeout=o.visibility_timeout,
            processor_timeout=o.processor_timeout,
        )
        endpoint = o.aws_endpoint_url or self._start_moto()
        visma = self._visma()
        resources = create_resources(
            spec,
            aws.client("sqs", endpoint),
            aws.client("dynamodb", endpoint),
            aws.client("secretsmanager", endpoint),
            stack_name=o.stack_name,
            webhook_secrets=list(o.webhook_secrets),
            visma_credentials=visma.credentials,
        )
        env = self._environments(spec, resources, endpoint, visma)
        self.skipped_variables = env.skipped
        ingest = FunctionPool(
            load_functions("ingest", max(1, o.ingest_instances), env.ingest, self._log_stream),
            spec.ingest.logical_id,
            spec.ingest.timeout,
        )
        self.server = WebhookServer(ingest.invoke, o.host, o.port, observe=self.on_delivery).start()
        if self.sandbox is not None:  # its write-backs and events come back here, as Visma's would
            self.sandbox.configure_webhooks(url=self.server.url, secrets=list(o.webhook_secrets))
        self.state = _state(spec, resources, endpoint, self.server.url, visma, env, o.stack_name)
        if o.processor:
            self.pollers = start_pollers(
                self.state, env.processor, o.pollers, self.stop_event, self.report, self._log_stream
            )
        self.state.save(path)
        self._state_path = path
        if o.reconcile_interval > 0:
            module = reconciler.load(self.state, log_stream=self._log_stream)
            self.reconciler = Schedule(module, o.reconcile_interval, self.stop_event).start()
        return self.state

    def _visma(self) -> _Visma:
        visma = self.options.visma
        if visma.base_url:
            credentials: dict[str, str | None] = {
                "client_id": visma.client_id,
                "client_secret": visma.client_secret,
            }
            endpoint = _Visma(
                visma.base_url.rstrip("/"),
                visma.token_url or DEFAULT_TOKEN_URL,
                None,
                credentials,
                {name: url.rstrip("/") for name, url in visma.service_urls.items()},
            )
        else:
            client_id, client_secret = SANDBOX_CLIENT_ID, pysecrets.token_urlsafe(18)
            sandbox = self.sandbox = self._start_sandbox(client_id, client_secret)
            credentials = {"client_id": client_id, "client_secret": client_secret}
            endpoint = _Visma(sandbox.url, sandbox.token_url, sandbox.url, credentials, sandbox.urls)
        if visma.scope:
            endpoint.credentials["scope"] = visma.scope
        return endpoint

    def _environments(
        self, spec: StackSpec, resources: Resources, endpoint: str, visma: _Visma
    ) -> _Environments:
        o = self.options
        aws_env = aws.aws_environment(endpoint, aws.REGION)
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
            "DLQ_URL": resources.dlq_url,
            "IDEMPOTENCY_TABLE": resources.table_name,
            "VISMA_CLIENT_SECRET_ARN": resources.visma_secret_arn,
            **{SERVICE_URL_VARIABLES[name]: url for name, url in visma.service_urls.items()},
            **{SERVICE_SCOPE_VARIABLES[name]: scope for name, scope in o.visma.service_scopes.items()},
            "VISMA_API_BASE_URL": visma.base_url,
            "VISMA_TOKEN_URL": visma.token_url,
            "MAX_RECEIVE_COUNT": str(spec.max_receive_count),
            "RETRY_BASE_SECONDS": str(o.retry_base_seconds),
        }
        if o.handler_modules:
            processor_overrides["HANDLER_MODULES"] = o.handler_modules
        if self.sandbox is not None:  # the processor paces itself by the sandbox's window
            from visma_webhooks_local.sandbox.budget import DEFAULT_CALLS_PER_WINDOW, DEFAULT_WINDOW_SECONDS

            window = o.sandbox.window_seconds or DEFAULT_WINDOW_SECONDS
            processor_overrides["VISMA_BUDGET_WINDOW_SECONDS"] = str(window)
            processor_overrides["VISMA_BUDGET_ASSUMED_LIMIT"] = str(
                o.sandbox.calls_per_window or DEFAULT_CALLS_PER_WINDOW
            )
        processor_env, skipped_processor = function_environment(
            spec.processor.environment, resources, processor_overrides
        )
        skipped = sorted(set(skipped_ingest + skipped_processor))
        return _Environments(aws_env, ingest_env, processor_env, skipped)

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

        from visma_webhooks_local.stack.moto_transactions import install

        install()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        return f"http://{host}:{port}"

    def _start_sandbox(self, client_id: str, client_secret: str) -> VismaSandbox:
        from visma_webhooks_local.sandbox import VismaSandbox, WebhookConfig
        from visma_webhooks_local.sandbox.budget import DEFAULT_CALLS_PER_WINDOW, DEFAULT_WINDOW_SECONDS

        s = self.options.sandbox
        return VismaSandbox(
            port=s.port,
            latency=s.latency,
            error_rate=s.error_rate,
            throttle_rate=s.throttle_rate,
            rate_limit=s.calls_per_window or DEFAULT_CALLS_PER_WINDOW,
            rate_window=s.window_seconds or DEFAULT_WINDOW_SECONDS,
            seed=s.seed,
            client_id=client_id,
            client_secret=client_secret,
            webhooks=WebhookConfig(api_client_id=not s.anonymous_writes, drop_rate=s.drop_webhooks),
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
        if self.reconciler is not None:
            self.reconciler.join(5.0)
            self.reconciler = None
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.moto is not None:
            with contextlib.suppress(Exception):
                self.moto.stop()
            self.moto = None
        self._remove_state_file()
        # An abandoned batch still runs in its thread until the process exits: it keeps the
        # function log, so that what it logs meanwhile neither goes astray nor fails to write.
        if clean:
            self._close_logs()
        return clean

    def _remove_state_file(self) -> None:
        path = self._state_path
        if path is not None:
            with contextlib.suppress(StackError, OSError):
                if StackState.load(path).pid == os.getpid():
                    path.unlink()

    def _close_logs(self) -> None:
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        if self._log_stream is not None:
            self._log_stream.close()
            self._log_stream = None


def _state(
    spec: StackSpec,
    resources: Resources,
    endpoint: str,
    webhook_url: str,
    visma: _Visma,
    env: _Environments,
    stack_name: str,
) -> StackState:
    return StackState(
        pid=os.getpid(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        region=aws.REGION,
        aws_endpoint_url=endpoint,
        stack_name=stack_name,
        queue_url=resources.queue_url,
        queue_arn=resources.queue_arn,
        dlq_url=resources.dlq_url,
        dlq_arn=resources.dlq_arn,
        table_name=resources.table_name,
        webhook_secret_arn=resources.webhook_secret_arn,
        visma_secret_arn=resources.visma_secret_arn,
        webhook_url=webhook_url,
        visma_base_url=visma.base_url,
        token_url=visma.token_url,
        sandbox_url=visma.sandbox_url,
        visma_service_urls=dict(visma.service_urls),
        max_receive_count=spec.max_receive_count,
        processor={
            "function_name": spec.processor.logical_id,
            "timeout": spec.processor.timeout,
            "batch_size": spec.mapping.batch_size,
            "batching_window": spec.mapping.batching_window,
            "visibility_timeout": int(spec.queue.attributes.get("VisibilityTimeout", "30")),
            "environment": {k: v for k, v in env.processor.items() if k not in env.aws},
        },
    )


def start_pollers(
    state: StackState,
    processor_env: Mapping[str, str],
    count: int,
    stop: threading.Event,
    report: Report | None,
    log_stream: TextIO | None,
) -> list[Poller]:
    """Load ``count`` processor instances and start one poller for each; they share one
    :class:`FairShare`, so that one tenant's backlog does not delay another's."""
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
    fair = FairShare(
        sqs,
        state.queue_url,
        visibility_timeout=int(p.get("visibility_timeout", 30)),
        invocation_timeout=config.timeout,
        crowd=config.batch_size,
    )
    return [
        Poller(
            config,
            sqs,
            module.handler,
            outcomes=outcomes,
            report=report,
            stop=stop,
            name=f"poller-{i + 1}",
            fair=fair,
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
    env = {
        **aws.aws_environment(state.aws_endpoint_url, state.region),
        **state.processor.get("environment", {}),
    }
    return start_pollers(state, env, pollers, stop, report, log_stream)
