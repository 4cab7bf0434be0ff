"""The APNs provider token: one ES256 JWT per signing key, reused, renewed.

Apple, "Establishing a token-based connection to APNs": the token carries
``iss`` (the team id) and ``iat`` in its claims and ``kid`` (the key id) in
its header; APNs rejects a token whose ``iat`` is more than an hour old
and answers ``TooManyProviderTokenUpdates`` when a new one comes more
often than every 20 minutes. So one token is shared by every request and
connection and renewed after ``refresh`` seconds, which must lie between
20 and 60 minutes; a forced renewal (after ``ExpiredProviderToken``)
replaces a token only if it is still the one that failed, so that many
requests failing at once renew it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sessionpush.errors import ConfigError

__all__ = [
    "MAX_REFRESH",
    "MIN_REFRESH",
    "ProviderToken",
    "load_signing_key",
]

#: Apple: refresh no more often than every 20 minutes ...
MIN_REFRESH = 20 * 60.0
#: ... and no less often than every 60 minutes.
MAX_REFRESH = 60 * 60.0


def load_signing_key(path: Path, key: str) -> ec.EllipticCurvePrivateKey:
    """Read an APNs signing key (``AuthKey_KEYID.p8``, PKCS#8 PEM, P-256).

    ``key`` is the config key that named the file, for the error message.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot read {str(path)!r} ({exc.strerror}); download the "
            "key (AuthKey_KEYID.p8) from the Apple Developer account"
        ) from exc
    try:
        loaded = load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{key}: {str(path)!r} is not an unencrypted PEM private key; use "
            "the .p8 file exactly as Apple issued it"
        ) from exc
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
        loaded.curve, ec.SECP256R1
    ):
        raise ConfigError(
            f"{key}: {str(path)!r} is not a P-256 key; APNs signs tokens with "
            "ES256 (an Apple .p8 key)"
        )
    return loaded


class ProviderToken:
    """The ``authorization`` value for APNs, shared by every request.

    Args:
        key: The signing key (the ``.p8`` file's).
        key_id: The key's 10-character id (``kid``).
        team_id: The developer team's 10-character id (``iss``).
        refresh: Seconds a token is reused, between 20 and 60 minutes.
        clock: Wall time in epoch seconds; ``iat`` must be close to
            Apple's clock.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        *,
        refresh: float = 45 * 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not MIN_REFRESH <= refresh <= MAX_REFRESH:
            raise ConfigError(
                f"apns.token_refresh: {refresh:g} s is outside 1200-3600 s; "
                "Apple asks for a new token every 20 to 60 minutes"
            )
        self._key = key
        self.key_id = key_id
        self.team_id = team_id
        self.refresh = refresh
        self._clock = clock
        self._token: str | None = None
        self.issued_at = 0
        #: How many tokens were signed (tests, metrics).
        self.signed = 0

    def current(self) -> str:
        """The token to send now; a new one once ``refresh`` has passed."""
        if self._token is None or self._clock() - self.issued_at >= self.refresh:
            self._sign()
        assert self._token is not None
        return self._token

    def renew(self, failed: str) -> str:
        """A new token after APNs called ``failed`` expired, unless another
        request renewed it already; returns the token to retry with."""
        if self._token == failed:
            self._sign()
        return self.current()

    def _sign(self) -> None:
        self.issued_at = int(self._clock())
        self._token = jwt.encode(
            {"iss": self.team_id, "iat": self.issued_at},
            self._key,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )
        self.signed += 1
