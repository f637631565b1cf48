"""``python -m visma_webhooks_local.sandbox``: the sandbox in its own process, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from visma_webhooks_local.sandbox.budget import DEFAULT_CALLS_PER_WINDOW, DEFAULT_WINDOW_SECONDS
from visma_webhooks_local.sandbox.server import VismaSandbox
from visma_webhooks_local.sandbox.webhooks import WebhookConfig


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m visma_webhooks_local.sandbox",
        description="An embedded Visma.net ERP API sandbox: a threaded HTTP server on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=0, help="Financials (and Visma Connect); 0 picks a free port"
    )
    parser.add_argument("--salesorders-port", type=int, default=0, help="SalesOrders V3")
    parser.add_argument("--journaltx-port", type=int, default=0, help="Journal Transactions")
    parser.add_argument("--fixtures", type=Path, default=None, help="JSON file: Financials path → document")
    parser.add_argument(
        "--service-fixtures", type=Path, default=None, help="JSON file: service → path → document"
    )
    parser.add_argument("--webhook-url", default=None, help="where writes and deletions are notified")
    parser.add_argument("--webhook-secret", action="append", default=[], help="signs the notifications")
    parser.add_argument(
        "--webhook-delay", type=float, default=0.2, help="seconds from a change to its webhook"
    )
    parser.add_argument(
        "--no-api-client-id", action="store_true", help="notifications do not name the writer's client"
    )
    parser.add_argument(
        "--drop-webhooks",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of notifications dropped (recorded, never sent); --seed makes the draws repeatable",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API call")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of API calls answered 503")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="fraction answered 429")
    parser.add_argument(
        "--timeout-rate", type=float, default=0.0, help="fraction that hang --timeout-seconds"
    )
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    parser.add_argument(
        "--calls-per-window",
        "--rate-limit",
        dest="calls_per_window",
        type=int,
        default=DEFAULT_CALLS_PER_WINDOW,
        help="API calls per (tenant, client) in each window, as Visma's 4-fixed-window policy counts them",
    )
    parser.add_argument(
        "--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS, help="length of the rate-limit window"
    )
    parser.add_argument("--seed", type=int, default=None, help="of the fault and webhook-drop draws")
    parser.add_argument("--client-id", default=None, help="require this client id (and --client-secret)")
    parser.add_argument("--client-secret", default=None)
    parser.add_argument("--no-synthesize", action="store_true", help="404 for every path not in the fixtures")
    return parser


def sandbox_from(args: argparse.Namespace) -> VismaSandbox:
    """The sandbox the parsed arguments describe (not started); raises ValueError for a bad setting."""
    if not 0 <= args.drop_webhooks <= 1:
        raise ValueError("--drop-webhooks must be a fraction between 0 and 1")
    return VismaSandbox(
        port=args.port,
        fixtures=args.fixtures,
        latency=args.latency,
        error_rate=args.error_rate,
        throttle_rate=args.throttle_rate,
        seed=args.seed,
        timeout_rate=args.timeout_rate,
        timeout_seconds=args.timeout_seconds,
        host=args.host,
        client_id=args.client_id,
        client_secret=args.client_secret,
        rate_limit=args.calls_per_window,
        rate_window=args.window_seconds,
        synthesize=not args.no_synthesize,
        salesorders_port=args.salesorders_port,
        journaltx_port=args.journaltx_port,
        service_fixtures=args.service_fixtures,
        webhooks=WebhookConfig(
            url=args.webhook_url,
            secrets=args.webhook_secret,
            delay=args.webhook_delay,
            api_client_id=not args.no_api_client_id,
            drop_rate=args.drop_webhooks,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        sandbox = sandbox_from(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox.start()
    print(f"Visma sandbox listening on {sandbox.url}", flush=True)
    for name, url in sandbox.urls.items():
        print(f"  {name} {url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
