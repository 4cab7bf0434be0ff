"""Who may open a session: connection tokens, the public key, origins.

A **connection token** is a JWT signed by the app's backend with the app's
``signing_secret``: HMAC-SHA256 only (``alg`` is pinned to ``HS256``, so a
token claiming ``none`` or an RSA algorithm is refused before its claims
are read), with the claims ``app``, ``sub`` (the user id) and ``exp``
(epoch seconds). It travels in the ``hello`` frame, never in the URL, so
it never reaches an access log. Backends in any language make one with
their JWT library; :func:`sign_token` is the same in Python.

**Anonymous web mode**: a page sends the app's ``public_key`` instead of a
token, from an ``Origin`` on the app's allow-list; its user id is put under
``anon:`` so that it can never name a known user.

Nothing here logs or repeats a token: an :class:`AuthError` says what is
wrong with it, not what it was.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import jwt

from sessionpush.errors import SessionpushError
from sessionpush.gateway.apps import AppConfig, GatewayConfig, is_loopback_origin

__all__ = [
    "ALGORITHM",
    "ANONYMOUS_PREFIX",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_UNAUTHORIZED",
    "AuthError",
    "handshake_origin_allowed",
    "hello_origin_allowed",
    "public_key_matches",
    "sign_token",
    "verify_token",
]

ALGORITHM = "HS256"
ANONYMOUS_PREFIX = "anon:"
#: Close code: ``hello`` was refused (token, public key, origin or app).
CLOSE_UNAUTHORIZED = 4003
#: Close code: the token expired and no ``refresh`` came within the grace.
CLOSE_TOKEN_EXPIRED = 4004


class AuthError(SessionpushError):
    """A connection that may not open a session; the message says why and
    how to fix it without repeating any secret."""


def sign_token(
    secret: bytes,
    app: str,
    user: str,
    expires_in: float = 900.0,
    now: float | None = None,
) -> str:
    """A connection token for ``user`` of ``app``, valid ``expires_in`` s."""
    issued = time.time() if now is None else now
    claims = {"app": app, "sub": user, "iat": int(issued), "exp": issued + expires_in}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(
    token: str, app: AppConfig, user: str, now: float, max_lifetime: float
) -> float:
    """Check a token for ``user`` of ``app``; returns its ``exp``.

    Raises:
        AuthError: Unsigned, signed with another algorithm or key, for
            another app or user, expired, or living longer than
            ``max_lifetime``.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            app.signing_secret,
            algorithms=[ALGORITHM],
            # exp is checked below against the gateway's clock, not PyJWT's;
            # iat says nothing a short exp does not (and clocks drift).
            options={
                "require": ["exp", "sub", "app"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAlgorithmError:
        raise AuthError(
            f"the token is not signed with {ALGORITHM}: sign it with the app's "
            "signing_secret using HMAC-SHA256"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(
            f"the token has no {exc.claim!r} claim: tokens carry app, sub and exp"
        ) from None
    except jwt.InvalidTokenError:
        # A bad signature, a malformed token or "alg": "none" all land here.
        raise AuthError(
            f"the token is not a JWT signed with app {app.name!r}'s signing_secret"
        ) from None

    exp, sub, claimed = claims["exp"], claims["sub"], claims["app"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise AuthError("the token's exp is not a number of epoch seconds")
    if claimed != app.name:
        raise AuthError(f"the token is for another app than {app.name!r}")
    if not isinstance(sub, str) or not hmac.compare_digest(sub.encode(), user.encode()):
        raise AuthError("the token is for another user than hello's user")
    if exp <= now:
        raise AuthError("the token has expired: ask the app's backend for a new one")
    if exp - now > max_lifetime:
        raise AuthError(
            f"the token lives longer than {max_lifetime:g} s: connection tokens "
            "are short-lived; lower its exp"
        )
    return float(exp)


def public_key_matches(app: AppConfig, key: str) -> bool:
    if app.public_key is None:
        return False
    return hmac.compare_digest(app.public_key.encode(), key.encode())


def handshake_origin_allowed(
    config: GatewayConfig, origin: str | None, app: str | None
) -> bool:
    """Whether a websocket handshake from ``origin`` may go on.

    No ``Origin`` header means a client that is not a browser (servers,
    mobile apps); they must still authenticate with a token in ``hello``.
    A browser's origin must be on the list of ``app`` when the URL names
    it (``?app=NAME``), else on some app's list; in development mode only
    loopback pages may connect, so that a web page cannot reach a
    developer's local gateway.
    """
    if origin is None:
        return True
    origin = origin.lower()
    if config.dev_mode:
        return is_loopback_origin(origin)
    if app is not None:
        named = config.apps.get(app)
        return named is not None and origin in named.allowed_origins
    return origin in config.origins


def hello_origin_allowed(
    config: GatewayConfig, app: AppConfig, origin: str | None
) -> bool:
    """The origin again at ``hello``, now that the app is known."""
    if origin is None or config.dev_mode:
        return origin is None or is_loopback_origin(origin.lower())
    return origin.lower() in app.allowed_origins
