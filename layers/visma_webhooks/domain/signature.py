"""The Visma webhook dispatcher's signature: ``x-vwd-signature-v1``.

The header carries base64(HMAC-SHA256(key=secret UTF-8 bytes, msg=raw body)). Several
secrets may be valid at once while one is rotated, and several signatures may arrive in
one header: API Gateway joins repeated headers with commas, so ``sig-a,sig-b`` verifies
if any of its values does. Secrets are stripped of surrounding whitespace when read (a
pasted secret keeps its trailing newline).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable

SIGNATURE_HEADER = "x-vwd-signature-v1"
MAX_SIGNATURES = 8  # values in one header: a rotation needs two; more is not a dispatcher


def sign(body: bytes, secret: str) -> str:
    """The header value the dispatcher sends for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True if any comma-separated value of ``header`` is a signature of ``body`` under any secret.

    Every (secret, value) pair is compared in constant time, whether or not an earlier one
    matched. Values that are empty, not base64 or not 32 bytes never match; a header with
    more than :data:`MAX_SIGNATURES` values is refused whole.
    """
    given = _signatures(header)
    if not given:
        return False
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        for signature in given:
            matched |= hmac.compare_digest(expected, signature)
    return matched


def _signatures(header: str | None) -> list[bytes]:
    """The well-formed signatures in ``header`` (decoded), or none at all."""
    values = (header or "").split(",")
    if len(values) > MAX_SIGNATURES:
        return []
    decoded = []
    for value in values:
        try:
            signature = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(signature) == hashlib.sha256().digest_size:
            decoded.append(signature)
    return decoded


def secret_list(value: str | bytes | None) -> list[str]:
    """The secrets stored in one Secrets Manager value.

    The value is a JSON list of strings (several while a secret is rotated); a JSON string,
    or any other text that is not a JSON list or object (``s3cr3t``, ``12345``), counts as
    a single secret. Each is stripped of surrounding whitespace; blank ones are dropped.
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
    return [s.strip() for s in data if s.strip()]
