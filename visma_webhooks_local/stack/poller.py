"""The SQS event source mapping, emulated: poll the queue, invoke the processor, delete what succeeded.

As Lambda's mapping does it: long-poll batches (``AttributeNames``/``MessageAttributeNames``
All), gather up to the batch size within the batching window, invoke the function with the
SQS event and a context counting down from its timeout, then delete only the records that
are not in ``batchItemFailures``. Failed records are left alone: they come back when their
visibility ends (the processor itself sets it to the backoff), and after ``maxReceiveCount``
receives SQS moves them to the DLQ. A function error, or an invocation that runs past the
function timeout (Lambda would have stopped it), leaves the whole batch to return.

Fair queues. On AWS the queue is a fair queue (``MessageGroupId`` = tenant): SQS prefers
messages of groups with few messages in flight, so one tenant's backlog does not delay
another's. moto delivers in the order messages were sent, so the pollers of one stack
emulate it with a :class:`FairShare`: it counts the records in flight per group across
those pollers, and when the groups that could fill the next batch already have a full
batch in flight, it receives further ahead (up to ``lookahead`` messages) and holds what it
received, invisible, until a poller takes it. Each batch is taken group by group, fewest in
flight first (the oldest message breaks a tie), so a quiet tenant's notifications go into
the next batch whatever is queued before them. Without a crowded group nothing is held
beyond the batch being taken, as before.

Why holding, and not putting the crowded group's surplus back: every ``ReceiveMessage`` of
a message counts toward ``maxReceiveCount`` (``ChangeMessageVisibility`` does not), so
putting messages back to receive them again would push them toward the DLQ. A held message
is received once for the invocation it goes to: a keeper thread extends its visibility
(``ChangeMessageVisibility``) before it ends, so it never returns while held. On a stop,
held messages are made visible again at once; only a stop or a kill of the process costs
such a message the one receive it had (as a mapping that is disabled mid-poll does), and
after a kill they return when their visibility ends. With one poller nothing is in flight
between batches, so, as on AWS, fairness needs concurrent pollers (``--pollers N``).

Between batches a poller holds nothing of its own (the stack's share holds the messages
received ahead), so it can be stopped at any point (even killed) and started again, in this
process or another one.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore, OutcomeRecord
from visma_webhooks.domain.outcomes import FINAL
from visma_webhooks.domain.queueing import group_id, message_attribute
from visma_webhooks_local.stack.lambda_events import LambdaContext, sqs_event

log = logging.getLogger(__name__)

MAX_BATCH = 10
FAIR_LOOKAHEAD = 200  # messages a stack's pollers may hold received ahead, to look past a backlog
KEEP_INTERVAL = 1.0  # seconds between the keeper's visibility checks of held messages


@dataclass
class ProcessedRecord:
    """What became of one record of a batch, for the console."""

    message_id: str
    notification_id: str | None
    event: str | None
    outcome: str
    receive_count: int
    max_receive_count: int
    retried: bool
    feedback: dict[str, Any] | None = None
    error: str | None = None

    @property
    def to_dlq(self) -> bool:
        """Failed on its last receive: SQS moves it to the DLQ next."""
        return self.retried and self.receive_count >= self.max_receive_count


def join_all(pollers: Sequence[Poller], timeout: float, abandon: threading.Event | None = None) -> bool:
    """Wait for the pollers' loops to end (stop them first); False if a batch is still in
    flight after ``timeout`` seconds or once ``abandon`` is set."""
    deadline = time.monotonic() + timeout
    for poller in pollers:
        while not poller.join(0.1):
            if time.monotonic() >= deadline or (abandon is not None and abandon.is_set()):
                return False
    return True


def message_group(message: dict[str, Any]) -> str:
    """A received message's fair-queue group: its ``MessageGroupId``, else its tenant's."""
    return (message.get("Attributes") or {}).get("MessageGroupId") or group_id(
        message_attribute(message, "tenant_id")
    )


@dataclass
class _Held:
    message: dict[str, Any]
    seq: int  # arrival order: the oldest message of the least busy group goes first
    deadline: float  # monotonic time at which its visibility ends


class FairShare:
    """Fair-queue delivery shared by the pollers of one stack (see the module docstring).

    Thread-safe: any poller fills, takes and finishes batches through it. ``crowd`` is the
    number of records in flight that makes a group crowded (default: a full batch).
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        *,
        visibility_timeout: float,
        invocation_timeout: float,
        lookahead: int = FAIR_LOOKAHEAD,
        crowd: int = MAX_BATCH,
    ):
        self.sqs = sqs
        self.queue_url = queue_url
        self.visibility_timeout = max(1, int(visibility_timeout))
        # The keeper extends a held message once less than this is left, so that it never
        # reappears while held; a taken one is extended again to a full visibility timeout,
        # so that its invocation has as long as it would after a fresh receive.
        self.margin = max(2 * KEEP_INTERVAL, min(self.visibility_timeout / 2, invocation_timeout + 5))
        self.lookahead = max(MAX_BATCH, lookahead)
        self.crowd = max(1, crowd)
        self._lock = threading.Lock()  # the held messages and the counts
        self._filling = threading.RLock()  # one poller receives and takes at a time
        self._held: dict[str, deque[_Held]] = {}
        self._in_flight: Counter[str] = Counter()
        self._seq = itertools.count()
        self._keeper: threading.Thread | None = None

    @property
    def held(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._held.values())

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._in_flight)

    def batch(self, size: int, wait: int, stop: threading.Event) -> list[dict[str, Any]]:
        """Receive what is needed (:meth:`fill`) and take a batch (:meth:`take`), as one step:
        another poller's fill then counts this batch as in flight."""
        with self._filling:
            self.fill(size, wait, stop)
            return self.take(size)

    # -- receiving ahead ----------------------------------------------------------------------

    def fill(self, size: int, wait: int, stop: threading.Event) -> None:
        """Receive until the held messages can make a fair batch of ``size``, the lookahead
        is full or the queue has nothing more; long-poll (``wait``) only when nothing is held."""
        with self._filling:
            first = True
            while not stop.is_set():
                with self._lock:
                    held = sum(len(q) for q in self._held.values())
                    if held >= self.lookahead or self._uncrowded() >= size:
                        return
                started = time.monotonic()
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(MAX_BATCH, self.lookahead - held),
                    WaitTimeSeconds=wait if first and not held else 0,
                    VisibilityTimeout=self.visibility_timeout,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                first = False
                if not messages:
                    return
                self._hold(messages, started + self.visibility_timeout)

    def _uncrowded(self) -> int:
        """How many held messages a batch could take from groups below the crowd (lock held)."""
        return sum(min(len(q), max(0, self.crowd - self._in_flight[g])) for g, q in self._held.items())

    def _hold(self, messages: Iterable[dict[str, Any]], deadline: float) -> None:
        with self._lock:
            for m in messages:
                queue = self._held.setdefault(message_group(m), deque())
                for held in queue:  # received again (its visibility ran out): the new receipt counts
                    if held.message["MessageId"] == m["MessageId"]:
                        held.message, held.deadline = m, deadline
                        break
                else:
                    queue.append(_Held(m, next(self._seq), deadline))

    # -- batches ----------------------------------------------------------------------------

    def take(self, size: int) -> list[dict[str, Any]]:
        """Up to ``size`` held messages, one at a time from the group with the fewest in flight
        (counting those already taken); they count as in flight until :meth:`done`."""
        with self._lock:
            taken: list[_Held] = []
            while len(taken) < size and self._held:
                group = min(self._held, key=lambda g: (self._in_flight[g], self._held[g][0].seq))
                queue = self._held[group]
                taken.append(queue.popleft())
                if not queue:
                    del self._held[group]
                self._in_flight[group] += 1
            stale = time.monotonic() + self.visibility_timeout - 1  # received (or extended) over 1 s ago
            lost = self._extend([h for h in taken if h.deadline < stale])
            if lost:
                self._finish(h.message for h in taken if h.message["MessageId"] in lost)
            return [h.message for h in taken if h.message["MessageId"] not in lost]

    def done(self, messages: Iterable[dict[str, Any]]) -> None:
        """A batch is over: its records are no longer in flight."""
        with self._lock:
            self._finish(messages)

    def _finish(self, messages: Iterable[dict[str, Any]]) -> None:
        for m in messages:
            group = message_group(m)
            if self._in_flight[group] > 1:
                self._in_flight[group] -= 1
            else:
                self._in_flight.pop(group, None)

    # -- visibility ---------------------------------------------------------------------------

    def keep(self, stop: threading.Event) -> None:
        """Start the keeper (once): it extends held messages' visibility until ``stop``."""
        with self._lock:
            if self._keeper is not None and self._keeper.is_alive():
                return
            self._keeper = threading.Thread(target=self._keep, args=(stop,), name="fair-keeper", daemon=True)
            self._keeper.start()

    def _keep(self, stop: threading.Event) -> None:
        while not stop.wait(KEEP_INTERVAL):
            try:
                self.refresh()
            except (BotoCoreError, ClientError) as exc:
                log.warning("could not extend the visibility of held messages: %s", exc)

    def refresh(self) -> None:
        """Extend the visibility of held messages that have less than the margin left; one
        that cannot be extended (its receipt is no longer valid) is let go, it returns."""
        with self._lock:
            now = time.monotonic()
            lost = self._extend([h for q in self._held.values() for h in q if h.deadline - now < self.margin])
            for group in list(self._held):
                kept = deque(h for h in self._held[group] if h.message["MessageId"] not in lost)
                if kept:
                    self._held[group] = kept
                else:
                    del self._held[group]

    def release(self) -> None:
        """Make every held message visible again at once (the pollers are stopping)."""
        with self._lock:
            held = [h for q in self._held.values() for h in q]
            self._held.clear()
            self._change([h.message for h in held], 0)

    def _extend(self, items: Sequence[_Held]) -> set[str]:
        """Extend ``items`` to a full visibility timeout (lock held); the ids that failed."""
        deadline = time.monotonic() + self.visibility_timeout
        lost = self._change([h.message for h in items], self.visibility_timeout)
        for h in items:
            if h.message["MessageId"] not in lost:
                h.deadline = deadline
        return lost

    def _change(self, messages: Sequence[dict[str, Any]], timeout: int) -> set[str]:
        lost: set[str] = set()
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": timeout}
                for i, m in enumerate(chunk)
            ]
            try:
                response = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                failed = {f["Id"] for f in response.get("Failed", [])}
            except (BotoCoreError, ClientError) as exc:
                log.warning("ChangeMessageVisibilityBatch failed: %s", exc)
                failed = {e["Id"] for e in entries}
            lost.update(chunk[int(i)]["MessageId"] for i in failed)
        return lost


Invoke = Callable[[dict[str, Any], Any], dict[str, Any]]
Report = Callable[[list[ProcessedRecord]], None]


@dataclass
class PollerConfig:
    queue_url: str
    queue_arn: str
    region: str
    function_name: str
    timeout: float
    batch_size: int = MAX_BATCH
    batching_window: float = 0.0
    wait_seconds: int = 1  # short long-polls, so that a stop request is noticed within a second
    max_receive_count: int = 5


class Poller:
    """One concurrent "invocation slot" of the mapping: receive a batch, invoke, delete, repeat."""

    def __init__(
        self,
        config: PollerConfig,
        sqs: Any,
        invoke: Invoke,
        *,
        outcomes: DynamoDBOutcomeStore | None = None,
        report: Report | None = None,
        stop: threading.Event | None = None,
        name: str = "poller",
        fair: FairShare | None = None,
    ):
        self.config = config
        self.sqs = sqs
        self.invoke = invoke
        self.outcomes = outcomes  # to report each record's outcome
        self.report = report
        self.stop_event = stop or threading.Event()
        self.name = name
        self.fair = fair  # shared with the stack's other pollers; None: plain receives
        self.busy = threading.Event()  # set while a batch is in flight
        self.batches = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Poller:
        if self.fair is not None:
            self.fair.keep(self.stop_event)
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop to end; False if it is still busy with a batch after ``timeout``."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                messages = self.receive()
            except (BotoCoreError, ClientError) as exc:
                failures += 1
                log.warning("ReceiveMessage failed: %s", exc)
                self.stop_event.wait(min(5.0, 0.5 * failures))
                continue
            failures = 0
            if self.fair is not None and self.stop_event.is_set():
                self.fair.release()  # stopping: what was received ahead goes back before this batch runs
            if messages:
                self.process(messages)
        if self.fair is not None:
            self.fair.release()

    # -- one batch ------------------------------------------------------------------------

    def receive(self) -> list[dict[str, Any]]:
        """Up to a batch of messages: a long poll, then more until the batch is full or the window ends."""
        c = self.config
        size = max(1, min(c.batch_size, MAX_BATCH))
        messages = self._receive(size, c.wait_seconds)
        if messages and c.batching_window > 0:
            deadline = time.monotonic() + c.batching_window
            while len(messages) < size and time.monotonic() < deadline and not self.stop_event.is_set():
                try:
                    more = self._receive(size - len(messages), 0)
                except (BotoCoreError, ClientError) as exc:  # what was received still goes out
                    log.warning("ReceiveMessage failed within the batching window: %s", exc)
                    break
                if more:
                    messages.extend(more)
                else:
                    self.stop_event.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        return messages

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        if self.fair is not None:
            return self.fair.batch(count, wait, self.stop_event)
        response = self.sqs.receive_message(
            QueueUrl=self.config.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def process(self, messages: Sequence[dict[str, Any]]) -> list[ProcessedRecord]:
        """Invoke the function with one batch and delete the records it did not report as failed."""
        c = self.config
        self.busy.set()
        try:
            event = sqs_event(messages, c.queue_arn, c.region)
            context = LambdaContext(c.function_name, c.timeout)
            started = time.monotonic()
            try:
                response = self.invoke(event, context)
                error = None
            except Exception as exc:  # a function error: the whole batch returns after its visibility
                log.exception("the processor function failed; the batch will be received again")
                response, error = None, f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - started
            if elapsed > c.timeout:
                # Lambda would have stopped the invocation at its timeout: nothing of the batch is
                # deleted, and every record returns after its visibility timeout.
                log.warning(
                    "Task timed out: the invocation took %.1f s, beyond the function timeout of %.0f s; "
                    "the whole batch will be received again",
                    elapsed,
                    c.timeout,
                )
                response, error = None, f"Task timed out after {c.timeout:.0f} s"
            if response is None:
                failed = {m["MessageId"] for m in messages}
            else:
                failed = {f.get("itemIdentifier") for f in (response or {}).get("batchItemFailures") or []}
            # Counted and reported before the deletes: once the queue shows a batch done, its
            # report is out.
            records = self._records(messages, failed, error)
            self.batches += 1
            if self.report is not None and records:
                try:
                    self.report(records)
                except Exception:
                    log.exception("could not report the batch")
            self._delete([m for m in messages if m["MessageId"] not in failed])
            return records
        finally:
            if self.fair is not None:
                self.fair.done(messages)
            self.busy.clear()

    def _delete(self, messages: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            try:
                response = self.sqs.delete_message_batch(QueueUrl=self.config.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                log.warning("DeleteMessageBatch failed (the messages will be received again): %s", exc)
                continue
            for failure in response.get("Failed", []):
                log.warning("could not delete a processed message: %s", failure.get("Message"))

    # -- reporting ------------------------------------------------------------------------

    def _records(
        self, messages: Sequence[dict[str, Any]], failed: set[str | None], error: str | None
    ) -> list[ProcessedRecord]:
        if self.report is None:
            return []
        keys = {
            (message_attribute(m, "tenant_id") or "", message_attribute(m, "notification_id") or "")
            for m in messages
        }
        history = self._outcomes(sorted(k for k in keys if all(k)))
        records = []
        for m in messages:
            nid = message_attribute(m, "notification_id")
            receives = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            retried = m["MessageId"] in failed
            item = history.get((message_attribute(m, "tenant_id") or "", nid)) if nid else None
            outcome = "retrying" if retried else "acknowledged"
            feedback = None
            if item is not None:
                feedback = item.feedback
                if item.last_message_id not in (None, m["MessageId"]) and not retried:
                    outcome = "duplicate"  # another copy of this notification was processed
                elif not retried or item.outcome not in FINAL:
                    outcome = item.outcome or outcome
            elif retried and nid is None:
                outcome = "invalid"
            records.append(
                ProcessedRecord(
                    message_id=m["MessageId"],
                    notification_id=nid,
                    event=message_attribute(m, "event") or (item.event if item else None),
                    outcome=outcome,
                    receive_count=receives,
                    max_receive_count=self.config.max_receive_count,
                    retried=retried,
                    feedback=feedback,
                    error=error or (item.last_error if item else None),
                )
            )
        return records

    def _outcomes(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], OutcomeRecord]:
        if not keys or self.outcomes is None:
            return {}
        try:
            return self.outcomes.get_many(keys)
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not read outcome records: %s", exc)
            return {}
