"""What the commands print: the live lines of the local stack, and the tables and panels of the others.

Each function builds text or a rich renderable; the commands print them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from visma_webhooks_local.cli.app import now
from visma_webhooks_local.stack.options import LocalOptions
from visma_webhooks_local.stack.poller import ProcessedRecord
from visma_webhooks_local.stack.spec import StackSpec
from visma_webhooks_local.stack.state import StackState

if TYPE_CHECKING:
    from visma_webhooks.adapters.outcome_store import OutcomeRecord
    from visma_webhooks_local.ops import Found, Status
    from visma_webhooks_local.replaying import ReplayResult

OUTCOME_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "duplicate": "cyan",
    "unhandled": "yellow",
    "retrying": "yellow",
    "throttled": "magenta",
    "invalid": "red",
    "echo": "blue",
    "unchanged": "cyan",
    "skipped": "dim",
}


def styled(outcome: str) -> str:
    return f"[{OUTCOME_STYLES.get(outcome, 'white')}]{outcome}[/]"


# -- live lines ---------------------------------------------------------------------------


def feedback_text(feedback: dict[str, Any] | None, outcome: str, label: str = "feedback ") -> str:
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
    if feedback.get("skipped"):
        return f"[dim]{label}not due: {escape(str(feedback['skipped']))}[/]"
    return f"[red]{label}not posted[/] {escape(str(feedback.get('error', '')))}"


def record_line(r: ProcessedRecord) -> str:
    """One processed notification: outcome, attempt, and where it goes next or its feedback."""
    style = OUTCOME_STYLES.get(r.outcome, "white")
    attempt = f"attempt {r.receive_count}/{r.max_receive_count}"
    line = (
        f"[dim]{now()}[/] {escape(r.notification_id or '(no notification id)')} "
        f"[bold]{escape(r.event or '-')}[/] [{style}]{r.outcome}[/] [dim]{attempt}[/] "
    )
    if not r.retried:
        return line + feedback_text(r.feedback, r.outcome)
    line += "[red]→ DLQ next[/]" if r.to_dlq else "[yellow]↻ back on the queue[/]"
    if r.feedback and r.to_dlq:
        line += " " + feedback_text(r.feedback, r.outcome)
    if r.error:
        line += f" [dim]{escape(r.error[:160])}[/]"
    return line


def delivery_line(status: int, body: dict[str, Any] | None) -> str:
    """One webhook delivery and the endpoint's answer."""
    body = body or {}
    if status != 202:
        return f"[dim]{now()}[/] ← delivery [red]{status}[/] {escape(str(body.get('message', '')))}"
    rejected = body.get("rejected") or []
    text = f"accepted {body.get('accepted', 0)}"
    if rejected:
        text += f", [red]quarantined {len(rejected)}[/] (DLQ)"
    if body.get("duplicates"):
        text += f", {body['duplicates']} duplicate(s) in the delivery"
    return f"[dim]{now()}[/] ← delivery [green]{status}[/] {text}"


# -- local --------------------------------------------------------------------------------


def banner(
    state: StackState, spec: StackSpec, options: LocalOptions, pollers: int, skipped: list[str]
) -> Panel:
    """Where everything of a started local stack is."""
    grid = _grid()
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
            f"{pollers} poller(s), batch {spec.mapping.batch_size}, timeout {spec.processor.timeout:g} s, "
            f"visibility {state.processor.get('visibility_timeout')} s, retry base {options.retry_base_seconds:g} s"
        )
        if options.processor
        else "[yellow]not running here[/]: start it with `visma-webhooks process`",
    )
    grid.add_row("State file", str(options.state_file))
    grid.add_row("Function logs", str(options.function_log or "stderr"))
    if skipped:
        grid.add_row("Not set", ", ".join(skipped) + " [dim](resources not emulated)[/]")
    return Panel(grid, title="visma-webhooks local", title_align="left", expand=False)


# -- replay -------------------------------------------------------------------------------


def replay_table(result: ReplayResult, label: str, dry_run: bool) -> Table:
    """What a replay examined, matched, moved and left on the DLQ."""
    table = Table(
        title=f"Replay{' (dry run: nothing moved)' if dry_run else ''} — {label}", title_justify="left"
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
    return table


# -- status -------------------------------------------------------------------------------


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def queues_table(result: Status) -> Table:
    queues = Table(title=f"Queues — {result.target}", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed", "oldest message"):
        queues.add_column(column, justify="right" if column != "queue" else "left")
    for q in (result.queue, result.dlq):
        shown_age = age(q.oldest_age) + (f" [dim]({q.age_source})[/]" if q.oldest_age is not None else "")
        style = "red" if q.name == "DLQ" and q.visible else ""
        queues.add_row(
            q.name,
            f"[{style}]{q.visible}[/]" if style else str(q.visible),
            str(q.in_flight),
            str(q.delayed),
            shown_age,
        )
    return queues


def outcomes_table(result: Status) -> Table:
    outcomes = Table(title=f"Notifications by outcome ({result.records} recorded)", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("count", justify="right")
    for name, count in sorted(result.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
        outcomes.add_row(styled(name), str(count))
    for name, count in sorted(result.feedback.items()):
        outcomes.add_row(f"[dim]feedback {name}[/]", str(count))
    if result.deleted:
        outcomes.add_row("[dim]resources deleted (handlers told)[/]", str(result.deleted))
    if result.duplicates:
        outcomes.add_row("[dim]re-deliveries absorbed as duplicates[/]", str(result.duplicates))
    return outcomes


# -- inspect ------------------------------------------------------------------------------

RECORD_FIELDS = (
    ("Event", "event"),
    ("Tenant", "tenant_id"),
    ("Service", "service"),
    ("Resource", "resource_path"),
    ("Changed by client", "api_client_id"),
    ("First seen", "first_seen"),
    ("Updated", "updated_at"),
    ("Attempts", "attempts"),
    ("Last receive count", "receive_count"),
)


def inspection_panel(notification_id: str, record: OutcomeRecord | None, where: str) -> Panel:
    """The notification's outcome, record fields, feedback and where it is now."""
    grid = _grid()
    grid.add_row("Notification", escape(notification_id))
    if record is not None:
        text = styled(record.effective_outcome)
        if record.duplicates_absorbed:
            text += f" [dim](later copies absorbed as duplicates: {record.duplicates_absorbed})[/]"
        grid.add_row("Outcome", text)
        _record_rows(grid, record)
    else:
        grid.add_row("History", "[yellow]no record: the processor has not seen it[/]")
    grid.add_row("Where now", f"[bold]{escape(where)}[/]")
    return Panel(grid, title="visma-webhooks inspect", title_align="left", expand=False)


def _record_rows(grid: Table, record: OutcomeRecord) -> None:
    for label, key in RECORD_FIELDS:
        if record.item.get(key) is not None:
            grid.add_row(label, escape(str(record.item[key])))
    feedback = record.feedback
    if feedback is not None:
        text = feedback_text(feedback, "", label="")
        if feedback.get("description"):
            text += f" [dim]— {escape(str(feedback['description'])[:200])}[/]"
        grid.add_row("Feedback", text)
    if record.last_error:
        grid.add_row("Last error", f"[red]{escape(record.last_error[:300])}[/]")


def handlers_table(record: OutcomeRecord) -> Table | None:
    """Each handler's status and result or error (None when the record names none)."""
    handlers = record.handlers
    if not handlers:
        return None
    table = Table(title="Handlers", title_justify="left")
    for column in ("handler", "status", "result / error"):
        table.add_column(column)
    for name, value in handlers.items():
        value = value if isinstance(value, dict) else {}
        status = str(value.get("status", ""))
        detail = {"succeeded": value.get("result"), "skipped": value.get("reason")}.get(
            status, value.get("error")
        )
        if value.get("deleted"):
            detail = f"(resource deleted) {detail}"
        table.add_row(escape(name), styled(status), escape(str(detail)[:200]))
    return table


def history_table(record: OutcomeRecord) -> Table | None:
    """The record's history, step by step (None when it has none)."""
    if not record.history:
        return None
    table = Table(title="History", title_justify="left")
    for column in ("at", "step", "detail"):
        table.add_column(column)
    for entry in record.history:
        detail = entry.detail
        if detail is None and entry.receive_count is not None:
            detail = f"receive {entry.receive_count}"
        table.add_row(escape(entry.at), styled(entry.step), escape((detail or "")[:200]))
    return table


def found_line(found: Found) -> str:
    """A message found on a queue."""
    return (
        f"[dim]{found.queue}: message {found.message_id}, received {found.receive_count} times, "
        f"sent {found.sent_at}[/]"
    )


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    return grid
