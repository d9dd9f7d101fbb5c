"""TLS contexts for ``wss://`` signaling, with one-line errors that name the bad file.

The server loads a PEM certificate (chain) and its private key; the client verifies the server
against the system's CAs or, for a self-signed or private-CA certificate, a CA file given by
the user. Files are checked one by one first (with the ``cryptography`` package, which aiortc
already depends on) because :meth:`ssl.SSLContext.load_cert_chain` reports every problem as an
anonymous ``[SSL] PEM lib`` error.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from signaling.errors import SignalingError

logger = logging.getLogger(__name__)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SignalingError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


def _check_certificates(path: Path, what: str) -> None:
    data = _read(path, what)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise SignalingError(f"{what} {str(path)!r} holds no PEM certificate") from None


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A TLS server context for ``cert`` (PEM, leaf first) and its unencrypted PEM ``key``."""
    cert_path, key_path = Path(cert), Path(key)
    _check_certificates(cert_path, "certificate file")
    try:
        serialization.load_pem_private_key(_read(key_path, "key file"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the key is encrypted (a server cannot ask for a passphrase).
        reason = "is encrypted" if isinstance(exc, TypeError) else "holds no PEM private key"
        raise SignalingError(f"key file {str(key_path)!r} {reason}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        reason = "does not match" if "KEY_VALUES_MISMATCH" in str(exc) else "cannot be used with"
        raise SignalingError(
            f"key file {str(key_path)!r} {reason} certificate file {str(cert_path)!r}"
        ) from None
    return context


def client_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A verifying TLS client context: the system CAs, or only those in ``ca_file``."""
    if ca_file is None:
        return ssl.create_default_context()
    path = Path(ca_file)
    _check_certificates(path, "CA file")
    return ssl.create_default_context(cafile=path)
