"""Each notification's one state item: lease, stages done, outcome and history, with conditional writes.

The item ``outcome#<tenant>#<notification_id>`` (read back by
:mod:`visma_webhooks.adapters.outcome_store`) is also the notification's idempotency
record, in place of Powertools idempotency's two writes per stage:

* **claim** — it takes the lease (until the invocation's deadline) unless another copy
  holds it or the run already completed, appends ``received`` to the history, and
  returns what earlier copies finished (``run#<run>``: handler results and feedback
  posted). For a new notification of a fetched resource, one transaction also takes the
  resource's lease if the state is newer and different (the happy path: one request);
  otherwise a conditional update, then the resource's lease with its state;
* **checkpoint** — the handlers' results, with the resource's release (its new watermark
  and fingerprint) in the same transaction, before the feedback is posted;
* **finish** — one update: the outcome, the history entry, the stages done, the lease
  given back, and ``completed_runs`` once done (and the resource's release, when a
  failure came before the checkpoint).

With one handler, a notification costs three requests: claim, checkpoint, finish.

A copy that finds the run completed is a duplicate; one that finds the lease held learns
until when. A crash leaves the lease to expire with the invocation; the next copy redoes
only what was not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from visma_webhooks.adapters.outcome_store import outcome_key, plain
from visma_webhooks.adapters.resource_store import DynamoDBResourceStore
from visma_webhooks.domain.ordering import Lease, ResourceClaim
from visma_webhooks.domain.outcomes import COMPLETED, Claim, ClaimStatus, Outcome, RecordResult

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

_HOLDER_ONLY = "lease_owner = :owner"


def _run(run: str) -> str:
    return f"run#{run}"


class DynamoDBNotificationState:
    def __init__(self, table_name: str, client: DynamoDBClient, ttl_seconds: int):
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.resources = DynamoDBResourceStore(table_name, client, ttl_seconds)

    def claim(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        *,
        owner: str,
        until: float,
        attempt: int,
        message_id: str,
        summary: Mapping[str, Any],
        resource: ResourceClaim | None = None,
    ) -> Claim:
        now = time.time()
        update = self._claim(tenant_id, notification_id, run, owner, until, attempt, message_id, summary, now)
        if resource is not None and resource.fetched is not None:
            fresh = {
                **update,
                "ConditionExpression": f"attribute_not_exists(#run) AND {update['ConditionExpression']}",
            }
            fresh["ExpressionAttributeNames"] = {**update["ExpressionAttributeNames"], "#run": _run(run)}
            lease = self.resources.acquire_newer(
                tenant_id, resource.service, resource.path, owner, until, resource.fetched
            )
            try:  # the happy path: a new notification of a changed, free resource, in one request
                self.client.transact_write_items(TransactItems=[{"Update": fresh}, lease])  # type: ignore[typeddict-item, list-item]
                return Claim(ClaimStatus.CLAIMED, lease=Lease(True, newer=True))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
        try:
            item = self.client.update_item(
                **update, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )["Attributes"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return _refused(plain({"M": exc.response.get("Item") or {}}), run, now)
        stages = plain(item[_run(run)]) if _run(run) in item else {}
        held = None
        if resource is not None:
            held = self.resources.acquire(tenant_id, resource.service, resource.path, owner, until)
        return Claim(ClaimStatus.CLAIMED, stages=stages, lease=held)

    def checkpoint(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        *,
        owner: str,
        stages: Mapping[str, Any],
        release: Any = None,
    ) -> None:
        """The handlers' results, before the feedback post (with the resource's release)."""
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": outcome_key(tenant_id, notification_id),
            "UpdateExpression": "SET #run = :stages",
            "ConditionExpression": _HOLDER_ONLY,
            "ExpressionAttributeNames": {"#run": _run(run)},
            "ExpressionAttributeValues": {":stages": attr(dict(stages)), ":owner": {"S": owner}},
        }
        if release is None:
            self.client.update_item(**update)
        else:
            self.client.transact_write_items(TransactItems=[{"Update": update}, release])  # type: ignore[typeddict-item]

    def _claim(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        owner: str,
        until: float,
        attempt: int,
        message_id: str,
        summary: Mapping[str, Any],
        now: float,
    ) -> dict[str, Any]:
        stamp = _now()
        names = {f"#{k}": k for k in summary}
        sets = "".join(f"#{k} = :{k}, " for k in summary)
        return {
            "TableName": self.table_name,
            "Key": outcome_key(tenant_id, notification_id),
            "UpdateExpression": (
                f"SET {sets}notification_id = :nid, first_seen = if_not_exists(first_seen, :stamp), "
                "updated_at = :stamp, receive_count = :attempt, last_message_id = :mid, expiration = :exp, "
                "lease_owner = :owner, lease_until = :until, "
                "#history = list_append(if_not_exists(#history, :empty), :entry) ADD attempts :one"
            ),
            "ConditionExpression": (
                "(attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner) "
                "AND NOT contains(completed_runs, :run)"
            ),
            "ExpressionAttributeNames": {**names, "#history": "history"},
            "ExpressionAttributeValues": {
                **{f":{k}": attr(v) for k, v in summary.items()},
                ":nid": {"S": notification_id},
                ":stamp": {"S": stamp},
                ":attempt": {"N": str(attempt)},
                ":mid": {"S": message_id},
                ":exp": {"N": str(int(now) + self.ttl_seconds)},
                ":owner": {"S": owner},
                ":until": {"N": f"{until:.3f}"},
                ":now": {"N": f"{now:.3f}"},
                ":run": {"S": run},
                ":empty": {"L": []},
                ":entry": {"L": [attr({"at": stamp, "step": "received", "receive_count": attempt})]},
                ":one": {"N": "1"},
            },
        }

    def finish(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        *,
        owner: str,
        result: RecordResult,
        stages: Mapping[str, Any],
        release: Any = None,
    ) -> None:
        update = self._finish(tenant_id, notification_id, run, owner, result, stages)
        if release is None:
            self._update(
                update, fallback=lambda: self._finish(tenant_id, notification_id, run, None, result, stages)
            )
            return
        try:
            self.client.transact_write_items(TransactItems=[{"Update": update}, release])  # type: ignore[typeddict-item]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            # Only past the invocation's deadline can a lease be lost: record the outcome anyway.
            self.client.update_item(**self._finish(tenant_id, notification_id, run, None, result, stages))

    def note(self, tenant_id: str, notification_id: str, result: RecordResult) -> None:
        stamp = _now()
        sets, values = _outcome(result, stamp)
        self.client.update_item(
            TableName=self.table_name,
            Key=outcome_key(tenant_id, notification_id),
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames={"#history": "history"},
            ExpressionAttributeValues=values,
        )

    def _finish(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        owner: str | None,
        result: RecordResult,
        stages: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The update recording this copy's outcome; ``owner``: only while we hold the lease."""
        sets, values = _outcome(result, _now())
        sets.append("#run = :stages")
        values[":stages"] = attr({**stages, "outcome": result.outcome.value})
        names = {"#history": "history", "#run": _run(run)}
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": outcome_key(tenant_id, notification_id),
            "ExpressionAttributeNames": names,
        }
        expression = "SET " + ", ".join(sets)
        if owner is not None:
            expression += " REMOVE lease_owner, lease_until"
            update["ConditionExpression"] = _HOLDER_ONLY
            values[":owner"] = {"S": owner}
        if result.outcome in COMPLETED:
            expression += " ADD completed_runs :run"
            values[":run"] = {"SS": [run]}
        update["UpdateExpression"] = expression
        update["ExpressionAttributeValues"] = values
        return update

    def _update(self, update: dict[str, Any], fallback: Any) -> None:
        try:
            self.client.update_item(**update)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            self.client.update_item(**fallback())


def _refused(item: dict[str, Any], run: str, now: float) -> Claim:
    if run in (item.get("completed_runs") or ()):
        found = str((item.get(_run(run)) or {}).get("outcome") or item.get("outcome") or "")
        known = found in {o.value for o in Outcome}
        return Claim(ClaimStatus.COMPLETED, found=Outcome(found) if known else Outcome.SUCCEEDED)
    return Claim(ClaimStatus.HELD, held_for=max(0.0, float(item.get("lease_until") or 0) - now))


def _outcome(result: RecordResult, stamp: str) -> tuple[list[str], dict[str, Any]]:
    """The SET clauses (and values) of a copy's outcome and its history entry."""
    entry: dict[str, Any] = {
        "at": stamp,
        "step": result.outcome.value,
        "detail": result.error or result.description,
    }
    if result.found is not None:
        entry["found"] = result.found.value
    values: dict[str, Any] = {
        ":outcome": {"S": result.outcome.value},
        ":stamp": {"S": stamp},
        ":entry": {"L": [attr(entry)]},
        ":empty": {"L": []},
    }
    sets = [
        "outcome = :outcome",
        "updated_at = :stamp",
        "#history = list_append(if_not_exists(#history, :empty), :entry)",
    ]
    for name, value in (
        ("handlers", result.handlers or None),
        ("feedback", result.feedback),
        ("description", result.description or None),
        ("last_error", result.error),
        ("deleted", result.deleted or None),
    ):
        if value is not None:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = attr(value)
    return sets, values


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def attr(value: Any) -> dict[str, Any]:
    """A plain value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [attr(v) for v in value]}
    return {"S": str(value)}
