"""The ``visma-webhooks`` Typer app, its consoles, and what several commands share."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from visma_webhooks_local.stack.state import StackError

if TYPE_CHECKING:
    from visma_webhooks_local.ops import Target

app = typer.Typer(
    name="visma-webhooks",
    help="Visma.net ERP webhooks on AWS: the local stack and the operator's tools.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # messages keep paths and ids whole

FILES = "Files"
DEPLOYED = "Deployed stack"

StateFile = Annotated[
    Path | None,
    typer.Option(
        "--state-file",
        metavar="PATH",
        help="The local stack's state file.",
        show_default="$VISMA_WEBHOOKS_STATE or .visma-webhooks/local.json",
        rich_help_panel=FILES,
    ),
]
StackName = Annotated[
    str | None,
    typer.Option(
        metavar="NAME",
        help="A deployed stack: its CloudFormation outputs name the queues (your AWS credentials).",
        rich_help_panel=DEPLOYED,
    ),
]
Region = Annotated[
    str | None,
    typer.Option(
        metavar="REGION",
        help="AWS region of --stack-name.",
        show_default="your AWS configuration's",
        rich_help_panel=DEPLOYED,
    ),
]
FunctionLogs = Annotated[
    str | None,
    typer.Option(
        metavar="PATH",
        help="Where the functions' logs go ('-': stderr).",
        show_default="functions.log beside the state file",
        rich_help_panel=FILES,
    ),
]


def main() -> None:
    """Console-script entry point."""
    app()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error; the caller raises the returned exit."""
    err.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def log_target(function_logs: str | None, state: Path) -> Path | None:
    """The functions' log file (None: stderr)."""
    if function_logs == "-":
        return None
    return Path(function_logs) if function_logs else state.parent / "functions.log"


def target(stack_name: str | None, region: str | None, state_file: Path | None) -> Target:
    """The stack an operation works on: a deployed one by name, else the local one."""
    from visma_webhooks_local.ops import local_target, stack_target

    try:
        return stack_target(stack_name, region) if stack_name else local_target(state_file)
    except StackError as exc:
        raise fail(str(exc)) from None


class Signals:
    """SIGINT/SIGTERM: the first stops gracefully, the second abandons in-flight work."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abandon = threading.Event()

    def install(self) -> Signals:
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
