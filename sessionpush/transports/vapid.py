"""VAPID (RFC 8292): who is sending, proved with a signed JWT per origin.

Signing costs about 47 us; a token may be reused for hours, so
:class:`VapidSigner` caches one per push-service origin and signs a new one
only when half of the old one's life has passed: a token is never sent
close to its ``exp``, whatever the clock skew of the push service.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sessionpush.errors import ConfigError
from sessionpush.transports.endpoints import origin_of

__all__ = [
    "MAX_LIFETIME",
    "VapidSigner",
    "check_subject",
    "generate_key_file",
    "load_key_file",
    "public_key_b64",
]

#: RFC 8292 section 2: ``exp`` MUST NOT be more than 24 hours ahead; push
#: services (Mozilla's among them) refuse more than 12.
MAX_LIFETIME = 12 * 3600.0


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The application server key as browsers take it (``applicationServerKey``):
    the uncompressed point, base64url without padding (RFC 8292 section 3.2)."""
    raw = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_key_file(path: Path) -> ec.EllipticCurvePrivateKey:
    """Write a new P-256 private key as PEM, readable by its owner only."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


def load_key_file(path: Path, setting: str) -> ec.EllipticCurvePrivateKey:
    """Read a P-256 private key in PEM, or raise naming ``setting``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{setting}: cannot read the VAPID key {str(path)!r} ({exc.strerror}); "
            "create one with `sessionpush keys generate`"
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise ConfigError(
            f"{setting}: {str(path)!r} is not an unencrypted PEM private key"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise ConfigError(
            f"{setting}: {str(path)!r} is not a P-256 key; VAPID signs with ES256 "
            "(RFC 8292 section 3.1)"
        )
    return key


def check_subject(subject: str, setting: str = "webpush.subject") -> str:
    """RFC 8292 section 2.1: ``sub`` is a ``mailto:`` or ``https:`` URI."""
    parts = urlsplit(subject)
    ok = (parts.scheme == "mailto" and "@" in parts.path) or (
        parts.scheme == "https" and bool(parts.hostname)
    )
    if not ok:
        raise ConfigError(
            f"{setting}: {subject!r} is not a contact URI; use 'mailto:ops@your."
            "domain' or 'https://your.domain/contact' (RFC 8292 section 2.1)"
        )
    return subject


class VapidSigner:
    """Signs and caches the VAPID ``Authorization`` header per origin.

    Args:
        key: The application server's P-256 private key.
        subject: The ``sub`` claim, checked by :func:`check_subject`.
        lifetime: Seconds from signing to ``exp``; at most 12 hours.
        clock: Wall time in seconds (tests move it).
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        subject: str,
        *,
        lifetime: float = MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 60 <= lifetime <= MAX_LIFETIME:
            raise ConfigError(
                f"webpush.token_lifetime: {lifetime} s is outside 60-{MAX_LIFETIME:.0f}"
            )
        self._key = key
        self.subject = check_subject(subject)
        self.public_key = public_key_b64(key)
        self._lifetime = lifetime
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self.signed = 0

    def header(self, endpoint: str) -> str:
        """``vapid t=..., k=...`` for a push to ``endpoint`` (RFC 8292 section 3)."""
        origin = origin_of(endpoint)
        now = self._clock()
        cached = self._cache.get(origin)
        if cached is not None and now < cached[0] - self._lifetime / 2:
            return cached[1]
        exp = int(now + self._lifetime)
        token = jwt.encode(
            {"aud": origin, "exp": exp, "sub": self.subject},
            self._key,
            algorithm="ES256",
        )
        value = f"vapid t={token}, k={self.public_key}"
        self._cache[origin] = (float(exp), value)
        self.signed += 1
        return value
