"""Erasing a user: ``DELETE /v1/users/{user}?app=APP``.

Takes an admin key of that app (or the operator key). The user's open
sockets close with 4005, their live sessions are dropped without running
post-session rules, and the store forgets them (profile, devices,
subscriptions, timers, caps, decisions, messages, outcomes). The answer
counts what went, by kind; erasing an unknown user answers 200 with zeros,
so that a retried request is harmless.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionpush.engine.core import Engine
from sessionpush.gateway.admin import AdminKeys, require_admin
from sessionpush.gateway.apps import GatewayConfig

__all__ = ["erasure_routes"]


def erasure_routes(
    engine: Callable[[], Engine], keys: AdminKeys, gateway: GatewayConfig
) -> list[Route]:
    """The erasure route; ``engine`` is looked up when a request comes."""

    async def erase(request: Request) -> Response:
        app = request.query_params.get("app", "default")
        refused = require_admin(request, keys, app)
        if refused is not None:
            return refused
        if not gateway.dev_mode and app not in gateway.apps:
            return JSONResponse(
                {"error": "unknown_app", "message": f"no app {app[:64]!r} here"},
                status_code=404,
            )
        report = await engine().erase_user(app, request.path_params["user"])
        return JSONResponse(
            {"app": app, "user": report.user, "removed": report.removed}
        )

    return [Route("/v1/users/{user}", erase, methods=["DELETE"])]
