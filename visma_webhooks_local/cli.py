"""The ``visma-webhooks`` command line: local stack, sending, replay, status, inspect, demo."""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from visma_webhooks_local.poller import ProcessedRecord, join_all
from visma_webhooks_local.stack import (
    DEFAULT_SCOPE,
    DEFAULT_TOKEN_URL,
    DEFAULT_WEBHOOK_SECRET,
    LOCAL_RETRY_BASE_SECONDS,
    LocalOptions,
    LocalStack,
    SandboxOptions,
    StackError,
    StackState,
    VismaOptions,
    state_path,
)
from visma_webhooks_local.template import DEFAULT_TEMPLATE, TemplateError

app = typer.Typer(
    name="visma-webhooks",
    help="Visma.net ERP webhooks on AWS: the local stack and the operator's tools.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # messages keep paths and ids whole

StateFile = Annotated[
    Path | None,
    typer.Option(
        "--state-file",
        help="The local stack's state file.",
        show_default="$VISMA_WEBHOOKS_STATE, else .visma-webhooks/local.json",
    ),
]
StackName = Annotated[
    str | None,
    typer.Option(help="A deployed stack: its CloudFormation outputs name the queues (your AWS credentials)."),
]
Region = Annotated[
    str | None, typer.Option(help="AWS region of --stack-name.", show_default="your AWS configuration's")
]
FunctionLogs = Annotated[
    str | None,
    typer.Option(
        help="Where the functions' logs go ('-': stderr).",
        show_default="functions.log beside the state file",
    ),
]

OUTCOME_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "duplicate": "cyan",
    "unhandled": "yellow",
    "retrying": "yellow",
    "throttled": "magenta",
    "invalid": "red",
}


def main() -> None:
    """Console-script entry point."""
    app()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


# -- live lines ---------------------------------------------------------------------------


def _feedback_text(feedback: dict[str, Any] | None, outcome: str, label: str = "feedback ") -> str:
    if not feedback:
        return f"[dim]no {label.strip() or 'feedback'}[/]"
    if feedback.get("posted"):
        if outcome == "duplicate":
            return f"[dim]{label}already posted[/]"
        return (
            f"{label}posted [green]✓ success[/]"
            if feedback.get("is_success")
            else f"{label}posted [red]✗ failure[/]"
        )
    return f"[red]{label}not posted[/] {escape(str(feedback.get('error', '')))}"


def _print_records(records: list[ProcessedRecord]) -> None:
    for r in records:
        style = OUTCOME_STYLES.get(r.outcome, "white")
        attempt = f"attempt {r.receive_count}/{r.max_receive_count}"
        line = (
            f"[dim]{_now()}[/] {escape(r.notification_id or '(no notification id)')} "
            f"[bold]{escape(r.event or '-')}[/] [{style}]{r.outcome}[/] [dim]{attempt}[/] "
        )
        if r.retried:
            line += "[red]→ DLQ next[/]" if r.to_dlq else "[yellow]↻ back on the queue[/]"
            if r.feedback and r.to_dlq:
                line += " " + _feedback_text(r.feedback, r.outcome)
            if r.error:
                line += f" [dim]{escape(r.error[:160])}[/]"
        else:
            line += _feedback_text(r.feedback, r.outcome)
        console.print(line, soft_wrap=True)


def _delivery_printer(status: int, body: dict[str, Any] | None) -> None:
    body = body or {}
    if status == 202:
        rejected = body.get("rejected") or []
        text = f"accepted {body.get('accepted', 0)}"
        if rejected:
            text += f", [red]quarantined {len(rejected)}[/] (DLQ)"
        if body.get("duplicates"):
            text += f", {body['duplicates']} duplicate(s) in the delivery"
        console.print(f"[dim]{_now()}[/] ← delivery [green]{status}[/] {text}", soft_wrap=True)
    else:
        console.print(
            f"[dim]{_now()}[/] ← delivery [red]{status}[/] {escape(str(body.get('message', '')))}",
            soft_wrap=True,
        )


class _Signals:
    """SIGINT/SIGTERM: the first stops gracefully, the second abandons in-flight work."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abandon = threading.Event()

    def install(self) -> _Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            self.abandon.set()
        self.stop.set()

    def wait(self) -> None:
        while not self.stop.wait(0.5):
            pass


def _log_target(function_logs: str | None, state: Path) -> Path | None:
    if function_logs == "-":
        return None
    return Path(function_logs) if function_logs else state.parent / "functions.log"


# -- local --------------------------------------------------------------------------------


@app.command()
def local(
    port: Annotated[int, typer.Option(help="Port of the webhook endpoint (0 picks a free one).")] = 3000,
    visma_base_url: Annotated[
        str | None, typer.Option(help="Visma.net ERP API base URL; without it the embedded sandbox runs.")
    ] = None,
    token_url: Annotated[
        str | None,
        typer.Option(
            help="Visma Connect token URL (with --visma-base-url; otherwise the sandbox's).",
            show_default=DEFAULT_TOKEN_URL,
        ),
    ] = None,
    client_id: Annotated[str | None, typer.Option(help="Visma Connect client id.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="Visma Connect client secret.")] = None,
    scope: Annotated[str, typer.Option(help="Visma Connect scope.")] = DEFAULT_SCOPE,
    webhook_secret: Annotated[
        list[str] | None,
        typer.Option(
            help="Webhook secret; repeat it to accept several.", show_default=DEFAULT_WEBHOOK_SECRET
        ),
    ] = None,
    max_receive_count: Annotated[
        int | None,
        typer.Option(min=1, help="Receives before the DLQ.", show_default="from template.yaml"),
    ] = None,
    visibility_timeout: Annotated[
        int | None,
        typer.Option(min=0, help="Queue visibility timeout, seconds.", show_default="from template.yaml"),
    ] = None,
    processor_timeout: Annotated[
        float | None,
        typer.Option(min=1, help="Processor timeout, seconds.", show_default="from template.yaml"),
    ] = None,
    retry_base_seconds: Annotated[
        float, typer.Option(min=0, help="Backoff base of transient failures (RETRY_BASE_SECONDS).")
    ] = LOCAL_RETRY_BASE_SECONDS,
    aws_endpoint_url: Annotated[
        str | None, typer.Option(help="Use this AWS emulator instead of starting moto's server.")
    ] = None,
    handler_modules: Annotated[
        str | None,
        typer.Option(help="HANDLER_MODULES, comma-separated.", show_default="from template.yaml"),
    ] = None,
    sandbox_latency: Annotated[
        float, typer.Option(min=0, help="Sandbox: seconds added to each API call.")
    ] = 0.0,
    sandbox_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Sandbox: fraction of API calls answered 503.")
    ] = 0.0,
    sandbox_throttle_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Sandbox: fraction of API calls answered 429.")
    ] = 0.0,
    sandbox_port: Annotated[int, typer.Option(help="Sandbox port (0 picks a free one).")] = 0,
    processor: Annotated[
        bool,
        typer.Option(
            "--processor/--no-processor",
            help="Run the processor here; with --no-processor, run `visma-webhooks process` beside it.",
        ),
    ] = True,
    pollers: Annotated[
        int, typer.Option(min=1, help="Concurrent processor invocations (each its own function instance).")
    ] = 1,
    quiet: Annotated[bool, typer.Option(help="No line per delivery and per notification.")] = False,
    state_file: StateFile = None,
    function_logs: FunctionLogs = None,
    template: Annotated[
        Path,
        typer.Option(
            help="The SAM template to read the resources from.", show_default="the project's template.yaml"
        ),
    ] = DEFAULT_TEMPLATE,
) -> None:
    """Run the whole pipeline here: emulated AWS, the real functions, the webhook endpoint and Visma."""
    if visma_base_url or client_id or client_secret or token_url:
        missing = [
            name
            for name, value in (
                ("--visma-base-url", visma_base_url),
                ("--client-id", client_id),
                ("--client-secret", client_secret),
            )
            if not value
        ]
        if missing:
            raise _fail(f"talking to a real Visma needs {', '.join(missing)} too")
    path = state_path(state_file)
    options = LocalOptions(
        port=port,
        visma=VismaOptions(visma_base_url, token_url, client_id, client_secret, scope or None),
        sandbox=SandboxOptions(sandbox_latency, sandbox_error_rate, sandbox_throttle_rate, sandbox_port),
        webhook_secrets=list(webhook_secret or [DEFAULT_WEBHOOK_SECRET]),
        max_receive_count=max_receive_count,
        visibility_timeout=visibility_timeout,
        processor_timeout=processor_timeout,
        retry_base_seconds=retry_base_seconds,
        aws_endpoint_url=aws_endpoint_url,
        handler_modules=handler_modules,
        processor=processor,
        pollers=pollers,
        template=template,
        state_file=path,
        function_log=_log_target(function_logs, path),
    )
    signals = _Signals().install()
    stack = LocalStack(
        options,
        report=None if quiet else _print_records,
        on_delivery=None if quiet else _delivery_printer,
    )
    try:
        state = stack.start()
    except (StackError, TemplateError, OSError) as exc:
        raise _fail(str(exc)) from None
    _banner(state, stack, options)
    signals.wait()
    console.print("[dim]stopping: finishing the batch in flight (Ctrl-C again to abandon it)…[/]")
    clean = stack.stop(abandon=signals.abandon)
    console.print(
        "[dim]stopped[/]" + ("" if clean else " [yellow](a batch was abandoned; it returns to the queue)[/]")
    )


def _banner(state: StackState, stack: LocalStack, options: LocalOptions) -> None:
    spec = stack.spec
    assert spec is not None
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Webhook URL", f"[cyan]{state.webhook_url}[/]")
    grid.add_row("Webhook secret", escape(", ".join(options.webhook_secrets)))
    if state.sandbox_url:
        grid.add_row("Visma", f"{state.sandbox_url} [dim](embedded sandbox)[/]")
    else:
        grid.add_row("Visma", f"{escape(state.visma_base_url)} [dim](token: {escape(state.token_url)})[/]")
    embedded = options.aws_endpoint_url is None
    grid.add_row(
        "AWS", f"{state.aws_endpoint_url} [dim]({'moto server, ' if embedded else ''}{state.region})[/]"
    )
    grid.add_row("Queue", f"{state.queue_url} [dim](maxReceiveCount {state.max_receive_count})[/]")
    grid.add_row("DLQ", state.dlq_url)
    grid.add_row("Table", state.table_name)
    grid.add_row(
        "Processor",
        (
            f"{len(stack.pollers)} poller(s), batch {spec.mapping.batch_size}, timeout {spec.processor.timeout:g} s, "
            f"visibility {state.processor.get('visibility_timeout')} s, retry base {options.retry_base_seconds:g} s"
        )
        if options.processor
        else "[yellow]not running here[/]: start it with `visma-webhooks process`",
    )
    grid.add_row("State file", str(options.state_file))
    grid.add_row("Function logs", str(options.function_log or "stderr"))
    if stack.skipped_variables:
        grid.add_row("Not set", ", ".join(stack.skipped_variables) + " [dim](resources not emulated)[/]")
    console.print(Panel(grid, title="visma-webhooks local", title_align="left", expand=False))
    console.print(
        f"Try: [bold]visma-webhooks send events/legacy-grouped.json[/] "
        f"[dim](or --url {state.webhook_url} --secret …)[/]. Ctrl-C stops.",
        soft_wrap=True,
    )


# -- process ------------------------------------------------------------------------------


@app.command()
def process(
    pollers: Annotated[int, typer.Option(min=1, help="Concurrent processor invocations.")] = 1,
    processor_timeout: Annotated[
        float | None,
        typer.Option(min=1, help="Processor timeout, seconds.", show_default="the local stack's"),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No line per notification.")] = False,
    state_file: StateFile = None,
    function_logs: FunctionLogs = None,
) -> None:
    """Run the processor against a running local stack (started with --no-processor).

    It can be stopped or killed at any point and started again: a batch it did not
    finish returns to the queue after its visibility timeout.
    """
    from visma_webhooks_local.stack import attach

    path = state_path(state_file)
    try:
        state = StackState.load(path)
    except StackError as exc:
        raise _fail(str(exc)) from None
    if not state.alive:
        raise _fail(f"the local stack (pid {state.pid}) is not running")
    log_path = _log_target(function_logs, path)
    stream = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    signals = _Signals().install()
    running = attach(
        state,
        pollers=pollers,
        stop=signals.stop,
        report=None if quiet else _print_records,
        log_stream=stream,
        processor_timeout=processor_timeout,
    )
    console.print(f"processing {state.queue_url} with {len(running)} poller(s); Ctrl-C stops", soft_wrap=True)
    while not signals.stop.wait(1.0):
        if not path.exists() or not state.alive:
            console.print("[yellow]the local stack has stopped[/]")
            signals.stop.set()
            break
    clean = join_all(running, float(state.processor.get("timeout", 30)) + 2, signals.abandon)
    if stream is not None:
        stream.close()
    console.print("[dim]stopped[/]" + ("" if clean else " [yellow](a batch was abandoned)[/]"))


# -- send ---------------------------------------------------------------------------------


@app.command()
def send(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="JSON bodies or envelopes.")
    ],
    url: Annotated[str | None, typer.Option(help="Webhook URL.", show_default="the local stack's")] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="VISMA_WEBHOOK_SECRET",
            help="Webhook secret.",
            show_default="the local stack's first secret",
        ),
    ] = None,
    new_ids: Annotated[bool, typer.Option(help="Replace every notification id with a fresh UUID.")] = False,
    state_file: StateFile = None,
) -> None:
    """Sign deliveries as the Visma webhook dispatcher does and POST them."""
    from visma_webhooks.domain.signature import secret_list
    from visma_webhooks_local.sending import load_delivery, post

    if url is not None and secret is None:
        raise _fail("--secret is needed with --url")
    if url is None:
        try:
            state = StackState.load(state_file)
        except StackError as exc:
            raise _fail(f"{exc} (or pass --url and --secret)") from None
        url = state.webhook_url
        if secret is None:
            value = state.client("secretsmanager").get_secret_value(SecretId=state.webhook_secret_arn)
            secret = secret_list(value["SecretString"])[0]
    failures = 0
    for file in files:
        try:
            delivery = load_delivery(file, new_ids=new_ids)
        except (OSError, ValueError) as exc:
            err.print(f"[red]{escape(str(file))}: {escape(str(exc))}[/]")
            failures += 1
            continue
        try:
            response = post(url, delivery, secret)
        except Exception as exc:
            err.print(f"[red]{escape(str(file))}: {escape(str(exc))}[/]")
            failures += 1
            continue
        ok = 200 <= response.status_code < 300
        failures += not ok
        style = "green" if ok else "red"
        console.print(
            f"{escape(str(file))} → [{style}]HTTP {response.status_code}[/] {escape(response.text)}",
            soft_wrap=True,
        )
    if failures:
        raise typer.Exit(1)


# -- replay -------------------------------------------------------------------------------


def _target(stack_name: str | None, region: str | None, state_file: Path | None) -> Any:
    from visma_webhooks_local.ops import local_target, stack_target

    try:
        return stack_target(stack_name, region) if stack_name else local_target(state_file)
    except StackError as exc:
        raise _fail(str(exc)) from None


@app.command()
def replay(
    dry_run: Annotated[bool, typer.Option(help="Show what would move; move nothing.")] = False,
    event: Annotated[str | None, typer.Option(help="Only events matching this glob (customer_*).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant id.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Move at most this many.")] = None,
    force: Annotated[bool, typer.Option(help="Process even notifications that completed before.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """Move notifications from the DLQ back to the queue (receive → send → delete; bodies unchanged)."""
    from visma_webhooks_local.ops import replay as do_replay

    target = _target(stack_name, region, state_file)
    depth = int(
        target.sqs.get_queue_attributes(
            QueueUrl=target.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
    )
    total = min(depth, limit) if limit else depth
    verb = "Examining" if dry_run else "Replaying"
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(f"{verb} the DLQ", total=max(total, 1), detail="")

        def update(result: Any) -> None:
            done = result.matched if dry_run else result.moved
            progress.update(
                task,
                completed=done,
                total=max(total, done, 1),
                detail=f"skipped {result.skipped}" + (f", failed {result.failed}" if result.failed else ""),
            )

        result = do_replay(
            target.sqs,
            target.dlq_url,
            target.queue_url,
            event_glob=event,
            tenant=tenant,
            limit=limit,
            dry_run=dry_run,
            force=force,
            progress=update,
        )
        update(result)
    table = Table(
        title=f"Replay{' (dry run: nothing moved)' if dry_run else ''} — {target.label}", title_justify="left"
    )
    table.add_column("")
    table.add_column("messages", justify="right")
    table.add_row("examined", str(result.examined))
    table.add_row("matched the filters", str(result.matched))
    table.add_row(
        "would move" if dry_run else "moved to the queue", str(result.matched if dry_run else result.moved)
    )
    table.add_row("left on the DLQ (filters/limit)", str(result.skipped))
    if result.failed:
        table.add_row("[red]failed to send (left on the DLQ)[/]", str(result.failed))
    for name, count in sorted(result.by_event.items()):
        table.add_row(f"  {escape(name)}", str(count))
    console.print(table)
    if force and not dry_run:
        console.print(f"[dim]forced run id {result.run_id}[/]")
    for error in result.errors:
        err.print(f"[yellow]{escape(error)}[/]")
    if result.failed:
        raise typer.Exit(1)


# -- status -------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """Queue and DLQ depths, the age of the oldest message, and notifications by outcome."""
    from visma_webhooks_local.ops import status as do_status

    target = _target(stack_name, region, state_file)
    result = do_status(target)
    if as_json:
        console.print_json(json.dumps(asdict(result), default=str))
        return
    queues = Table(title=f"Queues — {result.target}", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed", "oldest message"):
        queues.add_column(column, justify="right" if column != "queue" else "left")
    for q in (result.queue, result.dlq):
        age = _age(q.oldest_age) + (f" [dim]({q.age_source})[/]" if q.oldest_age is not None else "")
        style = "red" if q.name == "DLQ" and q.visible else ""
        queues.add_row(
            q.name,
            f"[{style}]{q.visible}[/]" if style else str(q.visible),
            str(q.in_flight),
            str(q.delayed),
            age,
        )
    console.print(queues)
    outcomes = Table(title=f"Notifications by outcome ({result.records} recorded)", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("count", justify="right")
    for name, count in sorted(result.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
        outcomes.add_row(f"[{OUTCOME_STYLES.get(name, 'white')}]{name}[/]", str(count))
    for name, count in sorted(result.feedback.items()):
        outcomes.add_row(f"[dim]feedback {name}[/]", str(count))
    if result.duplicates:
        outcomes.add_row("[dim]re-deliveries absorbed as duplicates[/]", str(result.duplicates))
    console.print(outcomes)
    if result.oldest_retrying is not None:
        console.print(
            f"oldest notification still being retried: first seen {_age(result.oldest_retrying)} ago"
        )


# -- inspect ------------------------------------------------------------------------------


@app.command()
def inspect(
    notification_id: Annotated[str, typer.Argument(help="Visma's notification id.")],
    peek_queue: Annotated[
        bool, typer.Option(help="Also search the main queue (a receive counts towards maxReceiveCount).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """The history of one notification: received, attempts, handlers, feedback, and where it is now."""
    from visma_webhooks_local.ops import duplicates_absorbed, effective_outcome
    from visma_webhooks_local.ops import inspect as do_inspect

    target = _target(stack_name, region, state_file)
    result = do_inspect(target, notification_id, peek_queue=peek_queue)
    if as_json:
        console.print_json(json.dumps(asdict(result), default=str))
    if not result.found:
        raise _fail(f"no notification {notification_id!r}: {result.where}")
    if as_json:
        return
    record = result.record or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Notification", escape(notification_id))
    if record:
        outcome = effective_outcome(record)
        text = f"[{OUTCOME_STYLES.get(outcome, 'white')}]{outcome}[/]"
        if duplicates_absorbed(record):
            text += f" [dim](later copies absorbed as duplicates: {duplicates_absorbed(record)})[/]"
        grid.add_row("Outcome", text)
        for label, key in (
            ("Event", "event"),
            ("Tenant", "tenant_id"),
            ("Resource", "resource_path"),
            ("First seen", "first_seen"),
            ("Updated", "updated_at"),
            ("Attempts", "attempts"),
            ("Last receive count", "receive_count"),
        ):
            if record.get(key) is not None:
                grid.add_row(label, escape(str(record[key])))
        feedback = record.get("feedback")
        if isinstance(feedback, dict):
            text = _feedback_text(feedback, "", label="")
            if feedback.get("description"):
                text += f" [dim]— {escape(str(feedback['description'])[:200])}[/]"
            grid.add_row("Feedback", text)
        if record.get("last_error"):
            grid.add_row("Last error", f"[red]{escape(str(record['last_error'])[:300])}[/]")
    else:
        grid.add_row("History", "[yellow]no record: the processor has not seen it[/]")
    grid.add_row("Where now", f"[bold]{escape(result.where)}[/]")
    console.print(Panel(grid, title="visma-webhooks inspect", title_align="left", expand=False))
    handlers = record.get("handlers") if isinstance(record.get("handlers"), dict) else {}
    if handlers:
        table = Table(title="Handlers", title_justify="left")
        for column in ("handler", "status", "result / error"):
            table.add_column(column)
        for name, value in handlers.items():
            value = value if isinstance(value, dict) else {}
            st = str(value.get("status", ""))
            detail = value.get("result") if st == "succeeded" else value.get("error")
            table.add_row(
                escape(name), f"[{OUTCOME_STYLES.get(st, 'white')}]{st}[/]", escape(str(detail)[:200])
            )
        console.print(table)
    history = record.get("history") or []
    if history:
        table = Table(title="History", title_justify="left")
        for column in ("at", "step", "detail"):
            table.add_column(column)
        for entry in history:
            entry = entry if isinstance(entry, dict) else {}
            step = str(entry.get("step", ""))
            detail = entry.get("detail")
            if detail is None and entry.get("receive_count") is not None:
                detail = f"receive {entry['receive_count']}"
            table.add_row(
                escape(str(entry.get("at", ""))),
                f"[{OUTCOME_STYLES.get(step, 'white')}]{step}[/]",
                escape(str(detail or "")[:200]),
            )
        console.print(table)
    for found in result.in_dlq + result.in_queue:
        console.print(
            f"[dim]{found.queue}: message {found.message_id}, received {found.receive_count} times, sent {found.sent_at}[/]"
        )


# -- demo ---------------------------------------------------------------------------------


@app.command()
def demo(
    keep_logs: Annotated[bool, typer.Option(help="Keep the stack's output and function logs.")] = False,
) -> None:
    """Start the local stack, send every sample signed, and show what happened to each notification."""
    from visma_webhooks_local.demo import run

    wide = console if console.is_terminal else Console(highlight=False, width=max(console.width, 150))
    raise typer.Exit(run(wide, keep_logs=keep_logs))


if __name__ == "__main__":
    sys.exit(main())
