"""Which long-term keys a username may sign with: static users and TURN REST credentials.

Both schemes end in the MD5 key of RFC 8489 §9.2.2 (see :mod:`nat.auth`); this module only
decides which keys to try for a username at a given time.
"""

from __future__ import annotations

from collections.abc import Iterable

from nat.auth import CredentialError, long_term_key, rest_password, rest_username_expiry
from nat.config import RelayConfig


class CredentialStore:
    """Long-term users (``user=``) and TURN REST shared secrets (``static-auth-secret``)."""

    def __init__(
        self,
        realm: str,
        users: Iterable[tuple[str, bytes]] = (),
        secrets: Iterable[str] = (),
    ) -> None:
        self.realm = realm
        self._users = dict(users)
        self._secrets = tuple(secrets)

    @classmethod
    def from_config(cls, config: RelayConfig) -> CredentialStore:
        """The credentials ``config`` enables: users with lt-cred-mech, secrets with
        use-auth-secret. Neither gives a store that accepts nobody (no open relay)."""
        return cls(
            config.realm,
            config.users if config.lt_cred_mech else (),
            config.static_auth_secrets if config.use_auth_secret else (),
        )

    def keys(self, username: str, now: float, *, allocated: bool = False) -> list[bytes]:
        """Candidate keys for ``username`` at Unix time ``now``; empty if it cannot log in.

        A TURN REST username (``<expiry>[:<user>]``) past its expiry gets no key, so the
        request is answered 401 as coturn does, unless ``allocated``: the request is about an
        allocation this same username created while the credential was valid. The expiry
        bounds when a credential can *obtain* a relay (draft-uberti-behave-turn-rest-00 §2.2:
        it limits how long a handed-out credential can be used to start sessions); it does
        not cut a call in progress. RFC 8656 §7.3 only asks that Refresh pass the long-term
        credential check, which the MESSAGE-INTEGRITY made with the secret-derived key still
        does. coturn behaves the same (it checks the timestamp when a session is created).
        """
        keys: list[bytes] = []
        static = self._users.get(username)
        if static is not None:
            keys.append(static)
        if self._secrets:
            try:
                expiry = rest_username_expiry(username)
            except CredentialError:
                return keys
            if allocated or expiry > now:
                keys.extend(
                    long_term_key(username, self.realm, rest_password(secret, username))
                    for secret in self._secrets
                )
        return keys

    def quota_name(self, username: str) -> str:
        """Whose quota an allocation counts against: a REST username's user part, if any.

        Minting fresh timestamps must not multiply a user's ``user-quota``.
        """
        if self._secrets and username not in self._users:
            head, sep, user = username.partition(":")
            if sep and head.isdigit():
                return user
        return username
