"""``visma-webhooks local``: the long-running local stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS
from visma_webhooks_local.cli.app import (
    FILES,
    FunctionLogs,
    Signals,
    StateFile,
    app,
    console,
    fail,
    log_target,
)
from visma_webhooks_local.cli.rendering import banner, delivery_line, record_line
from visma_webhooks_local.stack.local import LocalStack
from visma_webhooks_local.stack.options import (
    DEFAULT_SCOPE,
    DEFAULT_TOKEN_URL,
    DEFAULT_WEBHOOK_SECRET,
    LOCAL_RETRY_BASE_SECONDS,
    LocalOptions,
    SandboxOptions,
    VismaOptions,
)
from visma_webhooks_local.stack.poller import ProcessedRecord
from visma_webhooks_local.stack.state import StackError, state_path
from visma_webhooks_local.stack.template import DEFAULT_TEMPLATE, TemplateError

VISMA = "Visma (without these: the embedded sandbox)"
PROCESSING = "Queue and processor"
SANDBOX = "Embedded sandbox"
FROM_TEMPLATE = "template.yaml's"


@app.command()
def local(
    port: Annotated[int, typer.Option(help="Port of the webhook endpoint (0 picks a free one).")] = 3000,
    webhook_secret: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SECRET",
            help="Webhook secret; repeat it to accept several.",
            show_default=DEFAULT_WEBHOOK_SECRET,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No line per delivery and per notification.")] = False,
    aws_endpoint_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Use this AWS emulator instead of starting moto's server."),
    ] = None,
    visma_base_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Visma.net ERP API base URL.", rich_help_panel=VISMA),
    ] = None,
    token_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Visma Connect token URL.",
            show_default=DEFAULT_TOKEN_URL,
            rich_help_panel=VISMA,
        ),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(metavar="ID", help="Visma Connect client id.", rich_help_panel=VISMA)
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(metavar="SECRET", help="Visma Connect client secret.", rich_help_panel=VISMA),
    ] = None,
    scope: Annotated[
        str, typer.Option(metavar="SCOPE", help="Visma Connect scope.", rich_help_panel=VISMA)
    ] = DEFAULT_SCOPE,
    visma_salesorders_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="SalesOrders V3 API base URL.",
            show_default=FROM_TEMPLATE,
            rich_help_panel=VISMA,
        ),
    ] = None,
    visma_journaltx_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Journal Transaction API base URL.",
            show_default=FROM_TEMPLATE,
            rich_help_panel=VISMA,
        ),
    ] = None,
    financials_scope: Annotated[
        str | None,
        typer.Option(
            metavar="SCOPE", help="Financials API scopes.", show_default=FROM_TEMPLATE, rich_help_panel=VISMA
        ),
    ] = None,
    salesorders_scope: Annotated[
        str | None,
        typer.Option(
            metavar="SCOPE", help="SalesOrders API scopes.", show_default=FROM_TEMPLATE, rich_help_panel=VISMA
        ),
    ] = None,
    journaltx_scope: Annotated[
        str | None,
        typer.Option(
            metavar="SCOPE",
            help="Journal Transaction API scopes.",
            show_default=FROM_TEMPLATE,
            rich_help_panel=VISMA,
        ),
    ] = None,
    max_receive_count: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Receives before the DLQ.",
            show_default=FROM_TEMPLATE,
            rich_help_panel=PROCESSING,
        ),
    ] = None,
    visibility_timeout: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Queue visibility timeout.",
            show_default=FROM_TEMPLATE,
            rich_help_panel=PROCESSING,
        ),
    ] = None,
    processor_timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="Processor timeout.",
            show_default=FROM_TEMPLATE,
            rich_help_panel=PROCESSING,
        ),
    ] = None,
    retry_base_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Backoff base of transient failures (RETRY_BASE_SECONDS).",
            rich_help_panel=PROCESSING,
        ),
    ] = LOCAL_RETRY_BASE_SECONDS,
    handler_modules: Annotated[
        str | None,
        typer.Option(
            metavar="MODULES",
            help="HANDLER_MODULES, comma-separated.",
            show_default=FROM_TEMPLATE,
            rich_help_panel=PROCESSING,
        ),
    ] = None,
    processor: Annotated[
        bool,
        typer.Option(
            "--processor/--no-processor",
            help="Run the processor here; with --no-processor, run `visma-webhooks process` beside it.",
        ),
    ] = True,
    pollers: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Concurrent processor invocations (each its own function instance).",
            rich_help_panel=PROCESSING,
        ),
    ] = 1,
    sandbox_latency: Annotated[
        float,
        typer.Option(min=0, metavar="SECONDS", help="Added to each API call.", rich_help_panel=SANDBOX),
    ] = 0.0,
    sandbox_error_rate: Annotated[
        float,
        typer.Option(
            min=0, max=1, metavar="FRACTION", help="API calls answered 503.", rich_help_panel=SANDBOX
        ),
    ] = 0.0,
    sandbox_throttle_rate: Annotated[
        float,
        typer.Option(
            min=0, max=1, metavar="FRACTION", help="API calls answered 429.", rich_help_panel=SANDBOX
        ),
    ] = 0.0,
    sandbox_port: Annotated[
        int, typer.Option(metavar="PORT", help="0 picks a free one.", rich_help_panel=SANDBOX)
    ] = 0,
    sandbox_budget: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="API calls per (tenant, client) in each window (all services together, as Visma's "
            "4-fixed-window policy counts them); past them, 429.",
            show_default="100000, far more than the demo makes",
            rich_help_panel=SANDBOX,
        ),
    ] = None,
    sandbox_window: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            metavar="SECONDS",
            help="Length of the rate-limit window.",
            show_default="3600",
            rich_help_panel=SANDBOX,
        ),
    ] = None,
    sandbox_drop_webhooks: Annotated[
        float,
        typer.Option(
            min=0,
            max=1,
            metavar="FRACTION",
            help="Webhooks dropped: recorded (/_sandbox/dropped-webhooks), never sent.",
            rich_help_panel=SANDBOX,
        ),
    ] = 0.0,
    sandbox_seed: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Seed of the fault and webhook-drop draws, for repeatable runs.",
            rich_help_panel=SANDBOX,
        ),
    ] = None,
    sandbox_anonymous_writes: Annotated[
        bool,
        typer.Option(
            "--sandbox-anonymous",
            help="Its webhooks name no ApiClientId (before ERP 9.30).",
            rich_help_panel=SANDBOX,
        ),
    ] = False,
    reconcile_interval: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Run the ReconcilerFunction every SECONDS (0: only `visma-webhooks reconcile`).",
            rich_help_panel=PROCESSING,
        ),
    ] = 0.0,
    state_file: StateFile = None,
    function_logs: FunctionLogs = None,
    template: Annotated[
        Path,
        typer.Option(
            metavar="PATH",
            help="The SAM template to read the resources from.",
            show_default="the project's template.yaml",
            rich_help_panel=FILES,
        ),
    ] = DEFAULT_TEMPLATE,
) -> None:
    """Run the whole pipeline here: emulated AWS, the real functions, the webhook endpoint and Visma."""
    urls = {SALESORDERS: visma_salesorders_url, JOURNAL_TRANSACTIONS: visma_journaltx_url}
    scopes = {
        FINANCIALS: financials_scope,
        SALESORDERS: salesorders_scope,
        JOURNAL_TRANSACTIONS: journaltx_scope,
    }
    visma = VismaOptions(
        visma_base_url,
        token_url,
        client_id,
        client_secret,
        scope or None,
        {name: url for name, url in urls.items() if url},
        {name: value for name, value in scopes.items() if value},
    )
    missing = visma.missing()
    if missing:
        raise fail(f"talking to a real Visma needs {', '.join(missing)} too")
    path = state_path(state_file)
    options = LocalOptions(
        port=port,
        visma=visma,
        sandbox=SandboxOptions(
            sandbox_latency,
            sandbox_error_rate,
            sandbox_throttle_rate,
            sandbox_port,
            sandbox_anonymous_writes,
            calls_per_window=sandbox_budget,
            window_seconds=sandbox_window,
            drop_webhooks=sandbox_drop_webhooks,
            seed=sandbox_seed,
        ),
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
        function_log=log_target(function_logs, path),
        reconcile_interval=reconcile_interval,
    )
    run(options, quiet=quiet)


def run(options: LocalOptions, *, quiet: bool) -> None:
    """Start the stack, show where everything is, and stop it on the first signal."""
    signals = Signals().install()
    stack = LocalStack(
        options,
        report=None if quiet else print_records,
        on_delivery=None if quiet else print_delivery,
    )
    try:
        state = stack.start()
    except (StackError, TemplateError, OSError) as exc:
        raise fail(str(exc)) from None
    assert stack.spec is not None
    console.print(banner(state, stack.spec, options, len(stack.pollers), stack.skipped_variables))
    console.print(
        f"Try: [bold]visma-webhooks send events/legacy-grouped.json[/] "
        f"[dim](or --url {state.webhook_url} --secret …)[/]. Ctrl-C stops.",
        soft_wrap=True,
    )
    signals.wait()
    console.print("[dim]stopping: finishing the batch in flight (Ctrl-C again to abandon it)…[/]")
    clean = stack.stop(abandon=signals.abandon)
    console.print(
        "[dim]stopped[/]" + ("" if clean else " [yellow](a batch was abandoned; it returns to the queue)[/]")
    )


def print_records(records: list[ProcessedRecord]) -> None:
    for record in records:
        console.print(record_line(record), soft_wrap=True)


def print_delivery(status: int, body: dict[str, object] | None) -> None:
    console.print(delivery_line(status, body), soft_wrap=True)
