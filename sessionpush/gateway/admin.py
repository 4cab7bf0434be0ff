"""The admin credential of HTTP endpoints that change state.

Until app credentials exist, such endpoints take the key ``serve`` was
started with (``--admin-key`` or ``SESSIONPUSH_ADMIN_KEY``) as
``Authorization: Bearer KEY``. Without a configured key they refuse every
request, so a forgotten option never leaves them open.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["require_admin"]


def require_admin(request: Request, admin_key: str | None) -> Response | None:
    """None when the request carries the admin key, else the refusal."""
    if not admin_key:
        return JSONResponse(
            {
                "error": "admin_key_not_set",
                "message": "this endpoint needs an admin key: start serve with "
                "--admin-key or SESSIONPUSH_ADMIN_KEY",
            },
            status_code=403,
        )
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.encode(), admin_key.encode()
    ):
        return JSONResponse(
            {
                "error": "unauthorized",
                "message": "send the admin key as 'Authorization: Bearer KEY'",
            },
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None
