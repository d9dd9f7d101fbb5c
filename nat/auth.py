"""TURN credentials: long-term keys and the TURN REST API shared-secret scheme.

Both schemes end in the same long-term key that MESSAGE-INTEGRITY uses,
``MD5(username ":" realm ":" password)`` (RFC 8489 §9.2.2), so a server only ever needs the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math

from nat.errors import NatError


class CredentialError(NatError):
    """A username or key is malformed."""


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The long-term credential key, as coturn's ``turnadmin -k`` prints it (in hex).

    RFC 8489 §9.2.2 asks for the strings to be OpaqueString-prepared (RFC 8265); like coturn,
    we use them as given, which is identical for ASCII credentials.
    """
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def rest_password(secret: str, username: str) -> str:
    """The password for a TURN REST API username: base64(HMAC-SHA1(secret, username)).

    This is coturn's ``use-auth-secret`` scheme (draft-uberti-behave-turn-rest-00 §2.2).
    """
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_credentials(secret: str, user: str, ttl: float, now: float) -> tuple[str, str]:
    """Time-limited ``(username, password)`` valid until ``now + ttl`` (Unix seconds).

    The username is ``"<expiry>:<user>"``; an empty ``user`` gives just ``"<expiry>"``.
    """
    if ttl <= 0:
        raise CredentialError(f"credential lifetime must be positive, got {ttl}")
    if ":" in user:
        raise CredentialError(f"user {user!r} must not contain ':'")
    expiry = math.ceil(now + ttl)
    username = f"{expiry}:{user}" if user else str(expiry)
    return username, rest_password(secret, username)


def rest_username_expiry(username: str) -> int:
    """The expiry timestamp in a TURN REST username (the part before the first ':')."""
    head = username.split(":", 1)[0]
    if not head.isdigit():
        raise CredentialError(f"username {username!r} does not start with an expiry timestamp")
    return int(head)
