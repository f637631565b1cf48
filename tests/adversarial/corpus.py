"""Hostile deliveries for the ingest endpoint, each with the outcome it must get.

A case is refused with a clear 4xx (nothing enqueued anywhere), or answered 202 with its
hostile items quarantined in the DLQ and only safe notifications on the queue.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visma_webhooks.domain.signature import SIGNATURE_HEADER, sign

Signer = Callable[[bytes, str], dict[str, str]]

HOST = "https://api.finance.visma.net"
DISPATCHER = {
    "x-vwd-tenant-id": "5f0c8c1e-2d4b-4f1a-9a59-0c6e7f3b2a10",
    "x-vwd-notification-id": "b7e2f9d4-1c3a-4e8b-9f60-2a7d5c1e8b33",
    "x-vwd-webhook-timestamp": "1764000000250",
}


def signed(body: bytes, secret: str) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(body, secret)}


def unsigned(body: bytes, secret: str) -> dict[str, str]:
    return {}


def signature(value: Callable[[bytes, str], str], header: str = SIGNATURE_HEADER) -> Signer:
    """A signer that sends ``value(body, secret)`` in ``header``."""
    return lambda body, secret: {header: value(body, secret)}


def digest(algorithm: str) -> Callable[[bytes, str], str]:
    return lambda body, secret: base64.b64encode(hmac.new(secret.encode(), body, algorithm).digest()).decode()


@dataclass(frozen=True)
class Case:
    """One hostile request and the answer it must get (for 202: how many items go where)."""

    name: str
    body: bytes
    status: int
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    signer: Signer = signed
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_headers: bool = False  # put the headers in the event as given, not lower-cased
    env: Mapping[str, str] = field(default_factory=dict)

    def items(self) -> list[Any]:
        data = json.loads(self.body)
        return data if isinstance(data, list) else [data]


def item(**fields: Any) -> dict[str, Any]:
    """A valid legacy item; fields override it, a field set to ``...`` is left out."""
    base = {
        "notificationId": "0d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "contextId": "1262489",
        "event": "customer_changed",
        "resourceUri": f"{HOST}/v1/customer/10001",
        "timeStamp": 638680512000000000,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def refused(name: str, body: bytes, status: int, **options: Any) -> Case:
    return Case(name, body, status, **options)


def quarantined(name: str, payload: Any, **options: Any) -> Case:
    """Every item of ``payload`` must be kept in the DLQ, none enqueued."""
    count = len(payload) if isinstance(payload, list) else 1
    return Case(name, encode(payload), 202, rejected=count, **options)


def bad_uri(name: str, uri: str) -> Case:
    return quarantined(name, [item(resourceUri=uri)])


VALID = encode([item()])


SIGNATURE_ATTACKS = [
    refused("signature-missing", VALID, 401, signer=unsigned),
    refused("signature-empty", VALID, 401, signer=signature(lambda b, s: "")),
    refused("signature-blank", VALID, 401, signer=signature(lambda b, s: "   ")),
    refused("signature-of-another-body", VALID, 401, signer=signature(lambda b, s: sign(b"[]", s))),
    refused("signature-of-body-plus-a-space", VALID, 401, signer=signature(lambda b, s: sign(b + b" ", s))),
    refused(
        "signature-kept-body-changed",
        encode([item(resourceUri="https://169.254.169.254/v1/customer/1")]),
        401,
        signer=signature(lambda b, s: sign(VALID, s)),
    ),
    refused("signature-truncated", VALID, 401, signer=signature(lambda b, s: sign(b, s)[:24])),
    refused("signature-padded-with-data", VALID, 401, signer=signature(lambda b, s: sign(b, s) + "AAAA")),
    refused("signature-extra-padding", VALID, 401, signer=signature(lambda b, s: sign(b, s) + "=")),
    refused(
        "signature-hex-hmac-sha256",
        VALID,
        401,
        signer=signature(lambda b, s: hmac.new(s.encode(), b, hashlib.sha256).hexdigest()),
    ),
    refused("signature-hmac-sha1", VALID, 401, signer=signature(digest("sha1"))),
    refused("signature-hmac-sha512", VALID, 401, signer=signature(digest("sha512"))),
    refused(
        "signature-plain-sha256-no-key",
        VALID,
        401,
        signer=signature(lambda b, s: base64.b64encode(hashlib.sha256(b).digest()).decode()),
    ),
    refused("signature-empty-key", VALID, 401, signer=signature(lambda b, s: sign(b, ""))),
    refused(
        "signature-prefixed-with-algorithm", VALID, 401, signer=signature(lambda b, s: "sha256=" + sign(b, s))
    ),
    refused(
        "signature-forged-values-joined",
        VALID,
        401,
        signer=signature(lambda b, s: f"{sign(b, 'forged')},{sign(b, 'also-forged')}"),
    ),
    refused("signature-only-commas", VALID, 401, signer=signature(lambda b, s: " , ,")),
    refused(
        "signature-garbage-values-joined", VALID, 401, signer=signature(lambda b, s: "garbage,!!!,=,AAAA")
    ),
    refused(
        "signature-valid-among-too-many-values",
        VALID,
        401,
        signer=signature(lambda b, s: ",".join([sign(b, "forged")] * 8 + [sign(b, s)])),
    ),
    refused(
        "signature-valid-split-by-a-comma",
        VALID,
        401,
        signer=signature(lambda b, s: f"{sign(b, s)[:20]},{sign(b, s)[20:]}"),
    ),
    refused(
        "signature-uppercase-header-forged",
        VALID,
        401,
        raw_headers=True,
        signer=signature(lambda b, s: sign(b, "forged"), "X-VWD-SIGNATURE-V1"),
    ),
    refused(
        "signature-under-another-header-name",
        VALID,
        401,
        signer=signature(lambda b, s: sign(b, s), "x-vwd-signature"),
    ),
    refused("signature-non-ascii", VALID, 401, signer=signature(lambda b, s: "é" * 44)),
    refused("signature-with-nul", VALID, 401, signer=signature(lambda b, s: sign(b, s) + "\x00")),
]

# API Gateway joins repeated headers with commas: one valid value among them verifies.
JOINED_SIGNATURES = [
    Case(
        "signature-headers-joined",
        VALID,
        202,
        accepted=1,
        signer=signature(lambda b, s: f"{sign(b, s)},{sign(b, s)}"),
    ),
    Case(
        "signature-forged-joined-with-valid",
        VALID,
        202,
        accepted=1,
        signer=signature(lambda b, s: f"{sign(b, 'forged')}, {sign(b, s)}"),
    ),
    Case(
        "signature-garbage-and-empty-joined-with-valid",
        VALID,
        202,
        accepted=1,
        signer=signature(lambda b, s: f",garbage,{sign(b, s)},"),
    ),
]

SIZE_AND_NESTING = [
    refused("oversize-body", encode([item(note="x" * 600_000)]), 413),
    refused("oversize-body-unsigned", encode([item(note="x" * 600_000)]), 413, signer=unsigned),
    refused(
        "item-larger-than-a-queue-message",
        encode([item(note="x" * 1_048_200)]),
        413,
        env={"MAX_BODY_BYTES": "1048576"},
    ),
    refused("nested-100000-deep", b"[" * 100_000 + b"]" * 100_000, 400),
    refused("nested-40-deep-in-an-item", encode([item(note=json.loads("[" * 40 + "]" * 40))]), 400),
    refused("more-items-than-allowed", encode([item(notificationId=f"n{i}") for i in range(1001)]), 400),
    quarantined("id-of-10-kb", [item(notificationId="a" * 10_000)]),
]

WRONG_TYPES = [
    refused("body-is-a-number", b"42", 400),
    refused("body-is-a-string", b'"[{}]"', 400),
    refused("body-is-null", b"null", 400),
    refused("body-is-true", b"true", 400),
    refused("items-are-arrays", encode([[item()]]), 400),
    refused("items-mixed-with-scalars", encode([item(), 1, "x"]), 400),
    quarantined("id-is-an-object", [item(notificationId={"$ne": None})]),
    quarantined("id-is-a-float", [item(notificationId=1.5)]),
    quarantined("id-is-a-boolean", [item(notificationId=True)]),
    quarantined("tenant-is-a-list", [item(contextId=["1262489", "999"])]),
    quarantined("event-is-an-object", [item(event={"name": "customer_changed"})]),
    quarantined("resource-uri-is-a-number", [item(resourceUri=10001)]),
    quarantined("resource-uri-is-a-list", [item(resourceUri=[f"{HOST}/v1/customer/1"])]),
    quarantined("action-is-an-object", [item(action={"run": "DeleteAll"})]),
]

HUGE_NUMBERS = [
    refused("float-1e999", b'[{"notificationId":"n","contextId":"1","event":"e","x":1e999}]', 400),
    refused("float-minus-1e400", b'[{"notificationId":"n","contextId":"1","event":"e","x":-1e400}]', 400),
    refused(
        "integer-of-5001-digits",
        b'[{"notificationId":"n","contextId":"1","event":"e","x":1' + b"0" * 5000 + b"}]",
        400,
    ),
    refused("nan", b'[{"notificationId":"n","contextId":"1","event":"e","x":NaN}]', 400),
    refused(
        "infinity-as-timestamp",
        b'[{"notificationId":"n","contextId":"1","event":"e","timeStamp":Infinity}]',
        400,
    ),
    quarantined("id-of-401-digits", [item(notificationId=10**400)]),
    quarantined("tenant-of-300-digits", [item(contextId=10**300)]),
]

UNICODE = [
    refused("utf8-bom", b"\xef\xbb\xbf" + VALID, 400),
    refused("utf16-body", json.dumps([item()]).encode("utf-16"), 400),
    refused("overlong-utf8-dot", b'[{"notificationId":"n","contextId":"1","event":"\xc0\xae"}]', 400),
    refused("truncated-utf8-sequence", b'[{"notificationId":"n","contextId":"1","event":"\xe2\x82"}]', 400),
    refused(
        "surrogate-encoded-as-utf8", b'[{"notificationId":"n","contextId":"1","event":"\xed\xa0\x80"}]', 400
    ),
    refused("lone-surrogate-escape", b'[{"notificationId":"n\\ud800","contextId":"1","event":"e"}]', 400),
    quarantined("nul-in-notification-id", [item(notificationId="abc\x00def")]),
    quarantined("noncharacter-in-tenant", [item(contextId="1262489\ufffe")]),
    quarantined("rtl-override-in-resource-id", [item(resourceUri=f"{HOST}/v1/customer/\u202e1000")]),
    quarantined("rtl-override-percent-encoded", [item(resourceUri=f"{HOST}/v1/customer/%E2%80%AE1000")]),
    quarantined("zero-width-space-in-entity", [item(resourceUri=f"{HOST}/v1/cust\u200bomer/1")]),
    quarantined("event-of-emoji-only", [item(event="\U0001f525\U0001f525")]),
    bad_uri("homoglyph-host-cyrillic-i", "https://api.finance.v\u0456sma.net/v1/customer/1"),
    bad_uri("homoglyph-host-greek-alpha", "https://\u03b1pi.finance.visma.net/v1/customer/1"),
    bad_uri("punycode-host", "https://api.finance.xn--vsma-6za.net/v1/customer/1"),
    bad_uri("fullwidth-host", "https://\uff41\uff50\uff49.finance.visma.net/v1/customer/1"),
    bad_uri("ideographic-full-stops-in-host", "https://api\u3002finance\u3002visma\u3002net/v1/customer/1"),
    bad_uri("nfkc-separator-in-host", "https://api.finance.visma.net\u2100evil/v1/customer/1"),
    bad_uri("nul-and-nfkc-separator-in-host", "https://evil\x00\u2100\ufffe.example/v1/customer/1"),
]

SSRF_AND_TRAVERSAL = [
    bad_uri("ip-literal", "https://10.0.0.1/v1/customer/1"),
    bad_uri("cloud-metadata-address", "https://169.254.169.254/latest/meta-data/iam/security-credentials/"),
    bad_uri("ipv6-mapped-metadata", "https://[::ffff:169.254.169.254]/v1/customer/1"),
    bad_uri("decimal-ip", "https://2852039166/v1/customer/1"),
    bad_uri("octal-ip", "https://0251.0376.0251.0376/v1/customer/1"),
    bad_uri("localhost", "https://localhost/v1/customer/1"),
    bad_uri("userinfo-trusted-host-as-user", "https://api.finance.visma.net@evil.example/v1/customer/1"),
    bad_uri("userinfo-on-trusted-host", "https://attacker:pw@api.finance.visma.net/v1/customer/1"),
    bad_uri("port-then-userinfo", "https://api.finance.visma.net:443@evil.example/v1/customer/1"),
    bad_uri("backslash-in-authority", "https://api.finance.visma.net\\@evil.example/v1/customer/1"),
    bad_uri("backslashes-in-path", f"{HOST}/v1/customer\\..\\..\\admin\\1"),
    bad_uri("dot-dot-segments", f"{HOST}/v1/customer/../../admin/users"),
    bad_uri("encoded-dot-dot", f"{HOST}/v1/customer/%2e%2e/%2e%2e/admin"),
    bad_uri("double-encoded-dot-dot", f"{HOST}/v1/customer/%252e%252e/%252e%252e/admin"),
    bad_uri("overlong-encoded-dot-dot", f"{HOST}/v1/customer/%c0%ae%c0%ae/admin"),
    bad_uri("encoded-slash", f"{HOST}/v1/customer/1%2f..%2f..%2fadmin"),
    bad_uri("encoded-crlf", f"{HOST}/v1/customer/1%0d%0aHost:evil.example"),
    bad_uri("raw-crlf", f"{HOST}/v1/customer/1\r\nHost: evil.example"),
    bad_uri("http-scheme", "http://api.finance.visma.net/v1/customer/1"),
    bad_uri("file-scheme", "file:///etc/passwd"),
    bad_uri("gopher-scheme", "gopher://api.finance.visma.net:443/_v1/customer/1"),
    bad_uri("data-scheme", "data:text/plain;base64,aGVsbG8="),
    bad_uri("javascript-scheme", "javascript:alert(document.cookie)"),
    bad_uri("port-8443", "https://api.finance.visma.net:8443/v1/customer/1"),
    bad_uri("port-zero", "https://api.finance.visma.net:0/v1/customer/1"),
    bad_uri("port-overflow", "https://api.finance.visma.net:65980/v1/customer/1"),
    bad_uri("trusted-name-as-subdomain", "https://api.finance.visma.net.evil.example/v1/customer/1"),
    bad_uri("trailing-dot-host", "https://api.finance.visma.net./v1/customer/1"),
    bad_uri("scheme-relative", "//evil.example/v1/customer/1"),
    bad_uri("query-string", f"{HOST}/v1/customer/1?redirect=https://evil.example"),
    bad_uri("fragment", f"{HOST}/v1/customer/1#@evil.example"),
    bad_uri("outside-the-resource-pattern", f"{HOST}/v1/"),
    bad_uri("other-api-version", f"{HOST}/v3/customer/1"),
    quarantined(
        "relative-uri-that-is-absolute",
        [item(resourceUri=..., relativeResourceUri="https://evil.example/api/v1/x/1")],
    ),
    quarantined(
        "relative-uri-traversal", [item(resourceUri=..., relativeResourceUri="api/v1/../../../etc/passwd")]
    ),
]

# Every SSRF refusal holds on the other services' hosts too.
OTHER_SERVICES = [
    bad_uri(f"{name}-{attack}", uri.format(host=host, prefix=prefix))
    for name, host, prefix in (
        ("salesorders", "salesorder.visma.net", "/api/v3/"),
        ("journaltx", "journaltx.visma.net", "/api/v1/"),
    )
    for attack, uri in (
        ("look-alike-subdomain", "https://{host}.evil.example{prefix}SalesOrders/SO/1"),
        ("userinfo-trusted-host-as-user", "https://{host}@evil.example{prefix}SalesOrders/SO/1"),
        ("userinfo-on-trusted-host", "https://attacker:pw@{host}{prefix}SalesOrders/SO/1"),
        ("port-8443", "https://{host}:8443{prefix}SalesOrders/SO/1"),
        ("http-scheme", "http://{host}{prefix}SalesOrders/SO/1"),
        ("dot-dot-segments", "https://{host}{prefix}SalesOrders/../../../v1/customer/1"),
        ("encoded-slash", "https://{host}{prefix}SalesOrders/SO%2f..%2f1"),
        ("double-encoded-dot-dot", "https://{host}{prefix}SalesOrders/%252e%252e/1"),
        ("query-string", "https://{host}{prefix}SalesOrders/SO/1?redirect=https://evil.example"),
        ("too-many-segments", "https://{host}{prefix}SalesOrders/a/b/c/d/e/f/g"),
        ("financials-path-on-its-host", "https://{host}/v1/customer/1"),
    )
] + [
    bad_uri("legacy-host-serving-v3", "https://integration.visma.net/api/v3/SalesOrders/SO/1"),
    bad_uri("financials-host-serving-v3", f"{HOST}/api/v3/SalesOrders/SO/1"),
    bad_uri("legacy-sales-order-sub-resource", f"{HOST}/v1/salesorder/SO/1/lines/2"),
]

HEADER_INJECTION = [
    quarantined(
        "crlf-in-tenant-header",
        {"Event": "Customer Changed"},
        headers=DISPATCHER | {"x-vwd-tenant-id": "t1\r\nx-vwd-tenant-id: t2"},
    ),
    quarantined(
        "crlf-in-notification-id-header",
        {"Event": "Customer Changed"},
        headers=DISPATCHER | {"x-vwd-notification-id": "n1\r\nSet-Cookie: a=b"},
    ),
    quarantined(
        "nul-in-tenant-header",
        {"Event": "Customer Changed"},
        headers=DISPATCHER | {"x-vwd-tenant-id": "t1\x00admin"},
    ),
    quarantined(
        "overlong-tenant-header",
        {"Event": "Customer Changed"},
        headers=DISPATCHER | {"x-vwd-tenant-id": "t" * 8000},
    ),
    quarantined(
        "overlong-notification-id-header",
        [{"Event": "Customer Changed"}] * 3,
        headers=DISPATCHER | {"x-vwd-notification-id": "n" * 8000},
    ),
    quarantined(
        "json-in-tenant-header",
        {"Event": "Customer Changed"},
        headers=DISPATCHER | {"x-vwd-tenant-id": '{"$gt": ""}'},
    ),
    refused(
        "timestamp-header-in-unicode-digits",
        VALID,
        401,
        headers={"x-vwd-webhook-timestamp": "\u00b2" * 13},
        env={"WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS": "300"},
    ),
    refused(
        "timestamp-header-of-5000-digits",
        VALID,
        401,
        headers={"x-vwd-webhook-timestamp": "9" * 5000},
        env={"WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS": "300"},
    ),
    refused(
        "timestamp-header-replayed",
        VALID,
        401,
        headers={"x-vwd-webhook-timestamp": "1"},
        env={"WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS": "300"},
    ),
]

DUPLICATES = [
    Case("same-item-50-times", encode([item()] * 50), 202, accepted=1, duplicates=49),
    Case("same-id-other-content", encode([item(), item(action="DeleteAll")]), 202, accepted=1, duplicates=1),
    Case(
        "same-id-second-hostile",
        encode([item(), item(resourceUri="https://evil.example/v1/customer/1")]),
        202,
        accepted=1,
        rejected=1,
    ),
    Case(
        "same-id-first-hostile",
        encode([item(resourceUri="file:///etc/passwd"), item()]),
        202,
        accepted=1,
        rejected=1,
    ),
    quarantined("same-invalid-item-twice", [item(event=...)] * 2),
]

EMPTY = [
    refused("empty-body", b"", 400),
    refused("whitespace-body", b" \r\n\t ", 400),
    refused("empty-array", b"[]", 400),
    refused("array-of-empty-array", b"[[]]", 400),
    refused("nested-empty-arrays", b"[[[]]]", 400),
    quarantined("array-of-empty-object", [{}]),
    quarantined("empty-object", {}),
    quarantined("empty-strings", [item(notificationId="", contextId="", event="")]),
]

CASES: list[Case] = [
    *SIGNATURE_ATTACKS,
    *JOINED_SIGNATURES,
    *SIZE_AND_NESTING,
    *WRONG_TYPES,
    *HUGE_NUMBERS,
    *UNICODE,
    *SSRF_AND_TRAVERSAL,
    *OTHER_SERVICES,
    *HEADER_INJECTION,
    *DUPLICATES,
    *EMPTY,
]
