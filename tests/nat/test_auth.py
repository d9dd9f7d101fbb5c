from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from nat.auth import (
    CredentialError,
    long_term_key,
    rest_credentials,
    rest_password,
    rest_username_expiry,
)
from nat.nonce import NonceManager


def test_long_term_key_matches_rfc5769_vector() -> None:
    # RFC 5769 §2.4: username "<U+30DE><U+30C8><U+30EA><U+30C3><U+30AF><U+30B9>", realm
    # "example.org", password "TheMatrIX" (after SASLprep). Key = MD5(user:realm:pass).
    user = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    expected = hashlib.md5(f"{user}:example.org:TheMatrIX".encode()).digest()
    assert long_term_key(user, "example.org", "TheMatrIX") == expected
    # coturn: `turnadmin -k -u ninefingers -r north.gov -p youhavetoberealistic`
    assert long_term_key("ninefingers", "north.gov", "youhavetoberealistic").hex() == (
        "bc807ee29df3c9ffa736523fb2c4e8ee"
    )


def test_rest_credentials_follow_the_turn_rest_scheme() -> None:
    username, password = rest_credentials("s3cret", "alice", ttl=3600, now=1_700_000_000.2)
    assert username == "1700003601:alice"
    expected = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest())
    assert password == expected.decode()
    assert rest_password("s3cret", username) == password
    assert rest_username_expiry(username) == 1700003601
    assert rest_credentials("s", "", ttl=10, now=0)[0] == "10"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rest_credentials("s", "a:b", 10, 0), "user 'a:b' must not contain ':'"),
        (lambda: rest_credentials("s", "a", 0, 0), "credential lifetime must be positive, got 0"),
        (
            lambda: rest_username_expiry("alice"),
            "username 'alice' does not start with an expiry timestamp",
        ),
    ],
)
def test_bad_credentials_are_named(call: object, message: str) -> None:
    with pytest.raises(CredentialError) as exc:
        call()  # type: ignore[operator]
    assert str(exc.value) == message


def test_nonce_is_reused_within_a_second_per_ip_and_stays_valid() -> None:
    nonces = NonceManager(b"k" * 20, 600)
    first = nonces.issue("192.0.2.1", 1000.2)
    assert nonces.issue("192.0.2.1", 1000.9) is first  # one HMAC per IP per second
    assert nonces.issue("192.0.2.2", 1000.9).value != first.value
    later = nonces.issue("192.0.2.1", 1001.0)
    assert later.value != first.value
    assert nonces.valid(first.value, "192.0.2.1", 1500)
    assert nonces.valid(later.value, "192.0.2.1", 1500)
    assert not nonces.valid(first.value, "192.0.2.2", 1500)
    for i in range(5000):  # the cache stays bounded and correct past its size
        nonces.issue(f"10.0.{i // 256}.{i % 256}", 1000.0)
    assert nonces.valid(nonces.issue("192.0.2.1", 1000.0).value, "192.0.2.1", 1000.0)
    assert len(nonces._issued) <= 4096
