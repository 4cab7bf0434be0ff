"""OAuth 2.0 access tokens for a Google service account (FCM HTTP v1).

The service account's JSON key names its RSA private key, its e-mail and
the ``token_uri`` to ask. An access token is had for a JWT signed with
that key (RFC 7523 section 2.1, the JWT bearer grant: ``iss`` the account,
``aud`` the ``token_uri``, ``scope`` the FCM scope, an hour at most
between ``iat`` and ``exp``) and is kept until shortly before the
``expires_in`` it came with, so that sends do not wait for a new one and
none is used in the seconds it may lapse in transit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sessionpush.errors import ConfigError, SessionpushError

__all__ = [
    "FCM_SCOPE",
    "AccessTokens",
    "ServiceAccountKey",
    "TokenRefused",
    "load_service_account",
]

log = logging.getLogger("sessionpush.transports")

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
#: RFC 7523 grant type for "a JWT in exchange for an access token".
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Google accepts assertions valid for at most an hour.
ASSERTION_LIFETIME = 3600


class TokenRefused(SessionpushError):
    """The token endpoint did not give an access token.

    ``retry`` tells a passing failure (5xx, network) from a refusal of the
    credential (4xx) that only the operator can fix.
    """

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True, kw_only=True)
class ServiceAccountKey:
    """The fields of a service-account key file that we use."""

    project_id: str
    client_email: str
    token_uri: str
    private_key: rsa.RSAPrivateKey
    private_key_id: str | None = None


class _KeyFile(msgspec.Struct):
    type: str
    project_id: str
    private_key: str
    client_email: str
    token_uri: str
    private_key_id: str | None = None


def load_service_account(
    path: Path, key: str, *, allow_loopback: bool = False
) -> ServiceAccountKey:
    """Read and check a service-account JSON key; ``key`` names the setting."""
    fix = (
        "download a key from the Firebase console (Project settings, Service "
        "accounts, Generate new private key)"
    )
    try:
        raw = json.loads(path.read_bytes())
        parsed = msgspec.convert(raw, _KeyFile)
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot read {str(path)!r} ({exc.strerror}); {fix}"
        ) from exc
    except (ValueError, msgspec.ValidationError) as exc:
        raise ConfigError(
            f"{key}: {str(path)!r} is not a service-account key ({exc}); {fix}"
        ) from exc
    if parsed.type != "service_account":
        raise ConfigError(
            f"{key}: {str(path)!r} has type {parsed.type!r}, not "
            f"'service_account'; {fix}"
        )
    try:
        private = load_pem_private_key(parsed.private_key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{key}: the private_key in {str(path)!r} is not a PEM key; {fix}"
        ) from exc
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigError(
            f"{key}: the private_key in {str(path)!r} is not an RSA key; {fix}"
        )
    url = urlsplit(parsed.token_uri)
    loopback = url.scheme == "http" and url.hostname == "127.0.0.1"
    if url.scheme != "https" and not (allow_loopback and loopback):
        raise ConfigError(
            f"{key}: token_uri {parsed.token_uri!r} in {str(path)!r} is not "
            "https; the key's secret must not cross the network in clear"
        )
    return ServiceAccountKey(
        project_id=parsed.project_id,
        client_email=parsed.client_email,
        token_uri=parsed.token_uri,
        private_key=private,
        private_key_id=parsed.private_key_id,
    )


class _TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: float = 3600.0


class AccessTokens:
    """One service account's access token, fetched once and reused.

    Args:
        account: The service-account key.
        client: The HTTP client that asks ``token_uri``.
        clock: Wall time in epoch seconds.
        margin: Seconds before its expiry that a token is no longer used.
    """

    def __init__(
        self,
        account: ServiceAccountKey,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = 300.0,
    ) -> None:
        self.account = account
        self._client = client
        self._clock = clock
        self.margin = margin
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        #: How many tokens were fetched (tests, metrics).
        self.fetched = 0

    async def get(self) -> str:
        """A token valid for at least ``margin`` seconds more."""
        async with self._lock:  # many sends at once fetch one token
            if self._token is None or self._clock() >= self._expires - self.margin:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Drop ``token`` after the API refused it, unless already replaced."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> None:
        account = self.account
        now = int(self._clock())
        headers = {"kid": account.private_key_id} if account.private_key_id else None
        assertion = jwt.encode(
            {
                "iss": account.client_email,
                "scope": FCM_SCOPE,
                "aud": account.token_uri,
                "iat": now,
                "exp": now + ASSERTION_LIFETIME,
            },
            account.private_key,
            algorithm="RS256",
            headers=headers,
        )
        try:
            response = await self._client.post(
                account.token_uri,
                data={"grant_type": JWT_BEARER, "assertion": assertion},
            )
        except httpx.HTTPError as exc:
            raise TokenRefused(
                f"token endpoint unreachable: {type(exc).__name__}", retry=True
            ) from exc
        if response.status_code != 200:
            # RFC 6749 section 5.2: a refusal is 400 with an "error" code.
            raise TokenRefused(
                f"token endpoint answered {response.status_code}: "
                f"{response.text[:200]}",
                retry=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            answer = msgspec.json.decode(response.content, type=_TokenAnswer)
        except msgspec.DecodeError as exc:
            raise TokenRefused(
                f"token endpoint answered without an access_token: {exc}",
                retry=True,
            ) from exc
        self._token = answer.access_token
        self._expires = now + answer.expires_in
        self.fetched += 1
        log.debug(
            "new FCM access token for %s, %d s", account.client_email, answer.expires_in
        )
