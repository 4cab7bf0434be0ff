"""HTTP endpoints of push delivery: devices, the VAPID key, click tracking.

- ``PUT /v1/users/{user}/devices/{device}?app=APP`` (admin key): register
  a Web Push subscription, an APNs token or an FCM token; 400 with the
  field's path on invalid input, and nothing stored.
- ``GET /v1/vapid-public-key?app=APP``: the key browsers pass to
  ``pushManager.subscribe`` as ``applicationServerKey``.
- ``GET /r/{message_id}``: count a click and redirect to that message's
  own link, never to a URL the request names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sessionpush.engine.core import Engine
from sessionpush.gateway.admin import AdminKeys, require_admin
from sessionpush.store.base import DeliveryOutcome
from sessionpush.transports.subscriptions import (
    InvalidSubscription,
    Registration,
    to_subscription,
)
from sessionpush.transports.webpush import WebPushTransport

__all__ = ["push_routes", "record_engagement"]

_MAX_BODY = 16 * 1024
_registration = msgspec.json.Decoder(Registration)


def _bad(code: str, message: str, status: int = 400) -> Response:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def record_engagement(
    engine: Engine,
    message_id: str,
    app: str | None,
    user: str | None,
    outcome: str,
) -> str | None:
    """Record ``opened`` or ``clicked`` for a sent message; its link if known.

    With ``user``, only that user's message counts (an SDK reports its own
    opens); returns None when the message is unknown or not theirs.
    """
    sent = await engine.store.sent_message(message_id)
    if sent is None:
        return None
    if (app is not None and sent.app != app) or (
        user is not None and sent.user != user
    ):
        return None
    await engine.store.record_outcome(
        DeliveryOutcome(
            message_id=sent.id,
            app=sent.app,
            user=sent.user,
            rule=sent.rule,
            channel=sent.channel,
            outcome=outcome,
            at=engine.clock.now(),
        )
    )
    return sent.link or ""


def push_routes(
    engine: Callable[[], Engine],
    admin_key: str | AdminKeys | None,
    allow_loopback: Callable[[], bool],
) -> list[Route]:
    """The routes above; ``engine`` is looked up when a request comes."""

    async def put_device(request: Request) -> Response:
        app = request.query_params.get("app", "default")
        refused = require_admin(request, admin_key, app)
        if refused is not None:
            return refused
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _bad("too_large", f"a registration is at most {_MAX_BODY} bytes")
        try:
            registration = _registration.decode(body)
        except msgspec.DecodeError as exc:
            return _bad("invalid_registration", str(exc))
        live = engine()
        try:
            subscription = to_subscription(
                registration,
                app=app,
                user=request.path_params["user"],
                device_id=request.path_params["device"],
                now=live.clock.now(),
                allow_loopback=allow_loopback(),
            )
        except InvalidSubscription as exc:
            return _bad("invalid_registration", str(exc))
        await live.store.add_subscription(subscription)
        return JSONResponse(
            {
                "user": subscription.user,
                "device": subscription.device_id,
                "channel": subscription.channel,
            },
            status_code=200,
        )

    async def vapid_public_key(request: Request) -> Response:
        app = request.query_params.get("app", "default")
        transport = engine().transports.get("webpush")
        if not isinstance(transport, WebPushTransport) or app not in transport.signers:
            return _bad(
                "no_vapid_key",
                f"no VAPID key for app {app!r}: configure [webpush] in the "
                "delivery config",
                404,
            )
        return JSONResponse(
            {"app": app, "publicKey": transport.signers[app].public_key}
        )

    async def click(request: Request) -> Response:
        message_id = request.path_params["message_id"]
        link = await record_engagement(engine(), message_id, None, None, "clicked")
        if not link:
            return _bad("unknown_message", "no such message, or it has no link", 404)
        return RedirectResponse(link, status_code=302)

    handlers: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/v1/users/{user}/devices/{device}", put_device, ["PUT"]),
        ("/v1/vapid-public-key", vapid_public_key, ["GET"]),
        ("/r/{message_id}", click, ["GET"]),
    ]
    return [
        Route(path, handler, methods=methods) for path, handler, methods in handlers
    ]
