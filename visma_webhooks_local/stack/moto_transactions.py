"""moto's DynamoDB ``TransactWriteItems``, made safe for the concurrent requests of a local stack.

moto 5 backs a transaction up by deep-copying every table it touches, and rolls a
cancelled one back by putting those copies in place. With requests served concurrently
(the processor's record threads, several pollers, moto server's request threads) that
iterates a table while another thread writes to it (``dictionary changed size during
iteration``) and, on a cancellation, throws away the writes other threads made
meanwhile; it also costs a copy of the whole table for every transaction.

The replacement checks every condition of the transaction first and applies it only if
all hold, with DynamoDB writes serialised by one lock, so that nothing needs undoing and
no table is copied: what DynamoDB itself guarantees, for the emulator. :func:`install`
is idempotent; the local stack, the benchmarks and the tests install it before moto starts.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb import models
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import ConditionalCheckFailed, TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item")
_lock = threading.RLock()
_installed = False


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        for name in _WRITES:
            setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name)))
        original = DynamoDBBackend.transact_write_items
        DynamoDBBackend.transact_write_items = _checked(original)  # type: ignore[method-assign]
        models.copy = _TablesUncopied()  # type: ignore[assignment]
        _installed = True


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(self, *args, **kwargs)

    return write


def _checked(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with _lock:
            errors = [_check(self, item) for item in transact_items]
            if any(code is not None for code, _, _ in errors):
                raise TransactionCanceledException(errors)
            original(self, transact_items)  # every condition holds: nothing to undo

    return transact


def _check(backend: DynamoDBBackend, item: dict[str, Any]) -> tuple[Any, Any, Any]:
    op_type, op = next(iter(item.items()))
    if op_type == "Put":
        table = backend.get_table(op["TableName"])
        key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = op["Item"][table.range_key_attr]
    else:
        key = op["Key"]
    condition = op.get("ConditionExpression")
    if condition is None:
        return (None, None, None)
    current = backend.get_item(op["TableName"], key)
    test = get_filter_expression(
        condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    )
    if test.expr(current):
        return (None, None, None)
    old = None
    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
        old = current.to_json()["Attributes"]
    return ("ConditionalCheckFailed", ConditionalCheckFailed().message, old)


class _TablesUncopied:
    """``copy`` as moto's DynamoDB models use it, except that a table's deep copy is the table."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)
