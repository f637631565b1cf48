"""What may reach the queues, stated independently of the code under test."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from visma_webhooks.domain.models import Notification

# A notification on the queue names <service prefix><entity>/<id>[/<id>...] or no resource at all.
_TAIL = r"[A-Za-z][A-Za-z0-9]{0,63}(/[A-Za-z0-9._~%-]{1,120}){1,6}"
RESOURCE_PATHS = {
    "financials": re.compile(r"/v[12]/" + _TAIL),
    "salesorders": re.compile(r"/api/v3/" + _TAIL),
    "journaltransactions": re.compile(r"/api/v[0-9]+/" + _TAIL),
}
# Characters SQS refuses in message bodies and attribute values (moto does not check them).
_SQS_REFUSED = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UNSAFE_IN_PATH = re.compile(r"%(2e|2f|5c|00|25)|\.\.", re.IGNORECASE)


def sqs_refused(text: str) -> list[str]:
    """The characters of ``text`` that SQS would refuse."""
    return _SQS_REFUSED.findall(text)


def strict_json(text: str):
    """Parse JSON as any strict consumer would: NaN and Infinity are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} in a queue message")

    return json.loads(text, parse_constant=refuse)


def assert_safe_notification_body(body: str) -> Notification:
    """A queue message body is strict JSON, a valid Notification, with a safe resource path."""
    assert not sqs_refused(body), sqs_refused(body)
    notification = Notification.model_validate(strict_json(body))
    service, path = notification.service, notification.resource_path
    assert (path is None) == (service is None), (service, path)
    if service is not None and path is not None:
        assert RESOURCE_PATHS[service].fullmatch(path), (service, path)
        assert not _UNSAFE_IN_PATH.search(path), path
    return notification


def assert_safe_attributes(attributes: Mapping[str, str]) -> None:
    """Attribute values are short, printable and free of what SQS refuses or a log could be forged with."""
    for name, value in attributes.items():
        assert not sqs_refused(value), (name, value)
        assert value.isprintable(), (name, value)
        assert len(value) <= 256, (name, len(value))
