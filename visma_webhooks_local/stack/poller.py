"""The SQS event source mapping, emulated: poll the queue, invoke the processor, delete what succeeded.

As Lambda's mapping does it: long-poll batches (``AttributeNames``/``MessageAttributeNames``
All), gather up to the batch size within the batching window, invoke the function with the
SQS event and a context counting down from its timeout, then delete only the records that
are not in ``batchItemFailures``. Failed records are left alone: they come back when their
visibility ends (the processor itself sets it to the backoff), and after ``maxReceiveCount``
receives SQS moves them to the DLQ. A function error, or an invocation that runs past the
function timeout (Lambda would have stopped it), leaves the whole batch to return.

A poller holds no state of its own between batches, so it can be stopped at any point
(even killed) and started again, in this process or another one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore, OutcomeRecord
from visma_webhooks.domain.outcomes import FINAL
from visma_webhooks.domain.queueing import message_attribute
from visma_webhooks_local.stack.lambda_events import LambdaContext, sqs_event

log = logging.getLogger(__name__)

MAX_BATCH = 10


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
    ):
        self.config = config
        self.sqs = sqs
        self.invoke = invoke
        self.outcomes = outcomes  # to report each record's outcome
        self.report = report
        self.stop_event = stop or threading.Event()
        self.name = name
        self.busy = threading.Event()  # set while a batch is in flight
        self.batches = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Poller:
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
            if messages:
                self.process(messages)

    # -- one batch ------------------------------------------------------------------------

    def receive(self) -> list[dict[str, Any]]:
        """Up to a batch of messages: a long poll, then more until the batch is full or the window ends."""
        c = self.config
        size = max(1, min(c.batch_size, MAX_BATCH))
        messages = self._receive(size, c.wait_seconds)
        if messages and c.batching_window > 0:
            deadline = time.monotonic() + c.batching_window
            while len(messages) < size and time.monotonic() < deadline and not self.stop_event.is_set():
                more = self._receive(size - len(messages), 0)
                if more:
                    messages.extend(more)
                else:
                    self.stop_event.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        return messages

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
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
