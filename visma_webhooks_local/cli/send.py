"""``visma-webhooks send``: sign deliveries as the Visma webhook dispatcher does and POST them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from visma_webhooks_local.cli.app import StateFile, app, console, err, fail
from visma_webhooks_local.stack.state import StackError, StackState


@app.command()
def send(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="JSON bodies or envelopes.")
    ],
    url: Annotated[
        str | None, typer.Option(metavar="URL", help="Webhook URL.", show_default="the local stack's")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="VISMA_WEBHOOK_SECRET",
            metavar="SECRET",
            help="Webhook secret.",
            show_default="the local stack's first secret",
        ),
    ] = None,
    new_ids: Annotated[bool, typer.Option(help="Replace every notification id with a fresh UUID.")] = False,
    state_file: StateFile = None,
) -> None:
    """Sign deliveries as the Visma webhook dispatcher does and POST them."""
    if url is None:
        url, secret = _local_endpoint(state_file, secret)
    elif secret is None:
        raise fail("--secret is needed with --url")
    failures = sum(not _send_one(file, url, secret, new_ids) for file in files)
    if failures:
        raise typer.Exit(1)


def _local_endpoint(state_file: Path | None, secret: str | None) -> tuple[str, str]:
    """The local stack's webhook URL, and ``secret`` or else the stack's first webhook secret."""
    from visma_webhooks.domain.signature import secret_list

    try:
        state = StackState.load(state_file)
    except StackError as exc:
        raise fail(f"{exc} (or pass --url and --secret)") from None
    if secret is None:
        value = state.client("secretsmanager").get_secret_value(SecretId=state.webhook_secret_arn)
        secret = secret_list(value["SecretString"])[0]
    return state.webhook_url, secret


def _send_one(file: Path, url: str, secret: str, new_ids: bool) -> bool:
    """POST one file; False if it could not be read or sent, or was not answered 2xx."""
    from visma_webhooks_local.sending import load_delivery, post

    try:
        delivery = load_delivery(file, new_ids=new_ids)
    except (OSError, ValueError) as exc:
        err.print(f"[red]{escape(str(file))}: {escape(str(exc))}[/]")
        return False
    try:
        response = post(url, delivery, secret)
    except Exception as exc:
        err.print(f"[red]{escape(str(file))}: {escape(str(exc))}[/]")
        return False
    ok = 200 <= response.status_code < 300
    style = "green" if ok else "red"
    console.print(
        f"{escape(str(file))} → [{style}]HTTP {response.status_code}[/] {escape(response.text)}",
        soft_wrap=True,
    )
    return ok
