"""The admin credentials of HTTP endpoints that change state.

Two kinds of key, both sent as ``Authorization: Bearer KEY``:

- the **operator key** ``serve`` was started with (``--admin-key`` or
  ``SESSIONPUSH_ADMIN_KEY``): it may act on every app;
- an app's **admin keys** (``admin_keys`` of ``[apps.NAME]`` in the app
  config): they may act on that app only, and on nothing global.

An endpoint calls ``require_admin(request, keys, app)``; with no ``app`` it
is a global operation and only the operator key passes. Passing a plain
string as ``keys`` (the operator key alone) keeps working. Without any
configured key every request is refused, so a forgotten option never
leaves an endpoint open. Keys are compared in constant time and never
repeated in an answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["AdminKeys", "require_admin"]


@dataclass(frozen=True, slots=True)
class AdminKeys:
    """The operator key and each app's admin keys (left out of ``repr``)."""

    operator: str | None = field(default=None, repr=False)
    apps: Mapping[str, Sequence[str]] = field(default_factory=dict, repr=False)

    def allows(self, token: str, app: str | None) -> bool:
        """Whether ``token`` may act on ``app`` (None: on everything)."""
        given = token.encode()
        # Every candidate is compared, so the time taken does not tell which
        # key (or how much of one) a guess matched.
        ok = bool(self.operator) and hmac.compare_digest(
            given, (self.operator or "").encode()
        )
        if app is not None:
            for key in self.apps.get(app, ()):
                ok |= hmac.compare_digest(given, key.encode())
        return ok

    def configured(self, app: str | None) -> bool:
        return bool(self.operator) or (app is not None and bool(self.apps.get(app)))


def require_admin(
    request: Request, admin_key: str | AdminKeys | None, app: str | None = None
) -> Response | None:
    """None when the request carries a key that may act on ``app``, else
    the refusal (403 when no key is configured, 401 for a wrong key)."""
    keys = admin_key if isinstance(admin_key, AdminKeys) else AdminKeys(admin_key)
    if not keys.configured(app):
        return JSONResponse(
            {
                "error": "admin_key_not_set",
                "message": "this endpoint needs an admin key: start serve with "
                "--admin-key or SESSIONPUSH_ADMIN_KEY, or give the app admin_keys "
                "in its [apps.NAME] section",
            },
            status_code=403,
        )
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not keys.allows(token, app):
        target = "this app" if app is not None else "every app (the operator key)"
        return JSONResponse(
            {
                "error": "unauthorized",
                "message": "send an admin key of "
                f"{target} as 'Authorization: Bearer KEY'",
            },
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None
