"""``x-vwd-signature-v1``: base64 HMAC-SHA256 of the raw body, any of several secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from visma_webhooks.domain.signature import MAX_SIGNATURES, secret_list, sign, verify

SECRETS = ["old-secret-4fQ", "new-secret-9Zx", "standby-secret-7Lp"]
BODY = b'[{"notificationId":"1455fe2a","contextId":"1262489","event":"salesorder_changed"}]'


def test_sign_matches_the_rfc_4231_hmac_sha256_vector():
    # RFC 4231, test case 2: key "Jefe", HMAC-SHA256 = 5bdcc146...64ec3843
    expected = base64.b64encode(
        bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    ).decode()

    assert sign(b"what do ya want for nothing?", "Jefe") == expected


def test_secret_is_used_as_its_utf8_bytes():
    digest = hmac.new("søt-hemmelighet".encode(), BODY, hashlib.sha256).digest()

    assert verify(BODY, base64.b64encode(digest).decode(), ["søt-hemmelighet"])


@pytest.mark.parametrize("secret", SECRETS)
def test_each_of_several_secrets_verifies(secret):
    assert verify(BODY, sign(BODY, secret), SECRETS)


def test_every_secret_is_compared_even_after_a_match():
    consumed: list[str] = []

    def secrets():
        for secret in SECRETS:
            consumed.append(secret)
            yield secret

    assert verify(BODY, sign(BODY, SECRETS[0]), secrets())
    assert consumed == SECRETS


def test_surrounding_whitespace_in_the_header_is_ignored():
    assert verify(BODY, f" {sign(BODY, SECRETS[0])}\t", SECRETS)


def test_wrong_secret():
    assert not verify(BODY, sign(BODY, "not-configured"), SECRETS)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_signature(header):
    assert not verify(BODY, header, SECRETS)


def test_no_secrets_verify_nothing():
    assert not verify(BODY, sign(BODY, ""), [])


@pytest.mark.parametrize("position", [0, 1, len(BODY) // 2, len(BODY) - 1])
def test_body_tampered_by_one_byte(position):
    tampered = bytearray(BODY)
    tampered[position] ^= 0x01

    assert not verify(bytes(tampered), sign(BODY, SECRETS[0]), SECRETS)


def test_body_with_one_byte_more_or_less():
    signature = sign(BODY, SECRETS[0])

    assert not verify(BODY + b" ", signature, SECRETS)
    assert not verify(BODY[:-1], signature, SECRETS)


def test_signature_tampered_by_one_byte():
    digest = bytearray(base64.b64decode(sign(BODY, SECRETS[0])))
    for position in (0, 15, 31):
        changed = bytearray(digest)
        changed[position] ^= 0x80
        assert not verify(BODY, base64.b64encode(changed).decode(), SECRETS)


@pytest.mark.parametrize(
    "header",
    ["not base64 at all", "!!!!", "é" * 44, "a" * 43, "sha256=abc", "\x00" * 44],
)
def test_non_base64_signature(header):
    assert not verify(BODY, header, SECRETS)


def test_urlsafe_or_unpadded_base64_is_not_the_dispatcher_format():
    signature = sign(BODY, SECRETS[0])

    assert not verify(BODY, signature.rstrip("="), SECRETS)
    assert not verify(BODY, signature + "=", SECRETS)
    assert not verify(BODY, signature + "AAAA", SECRETS)


@pytest.mark.parametrize(
    "digest",
    [
        pytest.param(lambda key: hmac.new(key, BODY, hashlib.sha256).digest()[:31], id="31-bytes"),
        pytest.param(lambda key: hmac.new(key, BODY, hashlib.sha256).digest() + b"\x00", id="33-bytes"),
        pytest.param(lambda key: hmac.new(key, BODY, hashlib.sha1).digest(), id="hmac-sha1"),
        pytest.param(lambda key: hmac.new(key, BODY, hashlib.sha512).digest(), id="hmac-sha512"),
        pytest.param(lambda key: hashlib.sha256(BODY).digest(), id="plain-sha256"),
        pytest.param(lambda key: b"", id="empty"),
    ],
)
def test_wrong_length_or_algorithm(digest):
    header = base64.b64encode(digest(SECRETS[0].encode())).decode()

    assert not verify(BODY, header, SECRETS)


def test_hex_encoded_hmac_is_refused():
    assert not verify(BODY, hmac.new(SECRETS[0].encode(), BODY, hashlib.sha256).hexdigest(), SECRETS)


@pytest.mark.parametrize(
    ("value", "secrets"),
    [
        ('["a", "b"]', ["a", "b"]),
        (b'["a", "b"]', ["a", "b"]),
        ('["a", "", "  ", "b"]', ["a", "b"]),
        ("[]", []),
        ('"only"', ["only"]),
        ("plain-secret", ["plain-secret"]),
        ("  plain with spaces ", ["plain with spaces"]),
        ("pasted-secret\n", ["pasted-secret"]),
        (b"pasted-secret\r\n", ["pasted-secret"]),
        ('"json-string"\n', ["json-string"]),
        ('["rotated-a\\n", " rotated-b "]\n', ["rotated-a", "rotated-b"]),
        ("12345", ["12345"]),
        ("12345\n", ["12345"]),
        ("true", ["true"]),
        ("", []),
        (None, []),
    ],
)
def test_secret_list(value, secrets):
    assert secret_list(value) == secrets


@pytest.mark.parametrize("value", ['["a", 1]', '[["a"]]', '{"secret": "a"}', "[null]"])
def test_secret_list_refuses_other_json(value):
    with pytest.raises(ValueError, match="JSON list of strings"):
        secret_list(value)


def test_a_pasted_secret_verifies_what_the_dispatcher_signed_with_the_real_one():
    [secret] = secret_list("subscription-secret\n")

    assert verify(BODY, sign(BODY, "subscription-secret"), [secret])


# --- several values in one header (API Gateway joins repeated headers with commas) -----------------


@pytest.mark.parametrize(
    "header",
    [
        "{valid},{forged}",
        "{forged},{valid}",
        "{forged} , {valid} ",
        "{valid},{valid}",
        ",{valid},",
        "garbage,{valid},!!!",
    ],
)
def test_any_of_several_joined_signatures_verifies(header):
    valid, forged = sign(BODY, SECRETS[1]), sign(BODY, "forged")

    assert verify(BODY, header.format(valid=valid, forged=forged), SECRETS)


@pytest.mark.parametrize(
    "header",
    [
        ",",
        " , , ",
        "{forged},{forged2}",
        "garbage,!!!",
        "{half1},{half2}",  # one valid signature split by a comma is two halves, neither valid
        ",".join(["{forged}"] * MAX_SIGNATURES + ["{valid}"]),  # more values than a dispatcher sends
    ],
)
def test_joined_values_that_do_not_verify(header):
    valid = sign(BODY, SECRETS[0])
    values = {
        "valid": valid,
        "forged": sign(BODY, "forged"),
        "forged2": sign(BODY, "forged-2"),
        "half1": valid[:20],
        "half2": valid[20:],
    }

    assert not verify(BODY, header.format(**values), SECRETS)


def test_every_secret_is_compared_with_every_joined_value():
    consumed: list[str] = []

    def secrets():
        for secret in SECRETS:
            consumed.append(secret)
            yield secret

    header = f"{sign(BODY, SECRETS[0])},{sign(BODY, 'forged')}"

    assert verify(BODY, header, secrets())
    assert consumed == SECRETS
