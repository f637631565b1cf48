"""The Visma webhook dispatcher's signature: ``x-vwd-signature-v1``.

The header carries base64(HMAC-SHA256(key=secret UTF-8 bytes, msg=raw body)). Several
secrets may be valid at once while one is rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable

SIGNATURE_HEADER = "x-vwd-signature-v1"


def sign(body: bytes, secret: str) -> str:
    """The header value the dispatcher sends for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True if ``header`` is a valid signature of ``body`` under any of ``secrets``.

    Every secret is compared, in constant time, whether or not an earlier one matched.
    """
    if not header:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(given) != hashlib.sha256().digest_size:
        return False
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, given)
    return matched


def secret_list(value: str | bytes | None) -> list[str]:
    """The secrets stored in one Secrets Manager value.

    The value is a JSON list of strings (several while a secret is rotated); a JSON string,
    or any other text that is not a JSON list or object (``s3cr3t``, ``12345``), counts as
    a single secret.
    """
    if value is None:
        return []
    text = value.decode("utf-8") if isinstance(value, bytes) else value
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    if isinstance(data, str):
        data = [data]
    elif not isinstance(data, list | dict):
        data = [text]  # a plain secret that happens to read as a JSON number, boolean or null
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise ValueError("the webhook secret must be a JSON list of strings")
    return [s for s in data if s.strip()]
