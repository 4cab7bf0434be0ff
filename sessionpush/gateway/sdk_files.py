"""The web SDK served by the gateway, and the open report of its worker.

- ``GET /sdk/sessionpush.js``: the SDK, an ES module (``sdk/web/``), as
  written: no build step between the repository and the browser.
- ``GET /sdk/sessionpush.min.js``: the same, minified.
- ``GET /sdk/sw.js``: the service worker, a classic script so that a
  site's own worker can ``importScripts`` it from the gateway's origin.
- ``POST /v1/messages/{message_id}/opened``: the service worker reports
  that a push was opened; ``{"action": NAME}`` (one of its buttons) also
  counts a click. The worker sends it as ``text/plain`` so that no CORS
  preflight is needed.
  The message id is the capability, as for ``GET /r/{message_id}``: ids
  are 128 random bits, and an unknown id changes nothing.

The scripts are read once, at start-up. They are public and carry
``Access-Control-Allow-Origin: *`` so that pages on any origin can import
them (module scripts are fetched with CORS).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionpush.engine.core import Engine
from sessionpush.gateway.push_api import record_engagement

__all__ = ["SDK_FILES", "sdk_routes", "sdk_source"]

#: Served name -> file in ``sessionpush/gateway/web`` (links to sdk/web/).
SDK_FILES = ("sessionpush.js", "sessionpush.min.js", "sw.js")

_JS = "text/javascript; charset=utf-8"
_MAX_BODY = 1024


class _Opened(msgspec.Struct, forbid_unknown_fields=True):
    action: str | None = None


def sdk_source(name: str) -> bytes:
    """The bytes of one served SDK file."""
    return resources.files("sessionpush.gateway").joinpath("web", name).read_bytes()


def sdk_routes(engine: Callable[[], Engine]) -> list[Route]:
    files = {name: sdk_source(name) for name in SDK_FILES}

    def serve(name: str) -> Callable[[Request], Response]:
        headers = {
            "Access-Control-Allow-Origin": "*",
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
        }
        if name == "sw.js":
            # A worker served from /sdk/ may control the whole origin when the
            # gateway serves the site too (W3C Service Workers, 'Service-Worker-
            # Allowed'); a site elsewhere imports it into its own /sw.js.
            headers["Service-Worker-Allowed"] = "/"

        def handler(request: Request) -> Response:
            return Response(files[name], media_type=_JS, headers=headers)

        return handler

    async def opened(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _refuse("too_large", f"at most {_MAX_BODY} bytes")
        try:
            report = msgspec.json.decode(body or b"{}", type=_Opened)
        except msgspec.DecodeError as exc:
            return _refuse("invalid_report", str(exc))
        message_id = request.path_params["message_id"]
        live = engine()
        if await record_engagement(live, message_id, None, None, "opened") is None:
            return _refuse("unknown_message", "no such message", 404)
        if report.action is not None:
            # A button of the notification: opened, and its call to action
            # taken, so that clicks stay a subset of opens in the reports.
            await record_engagement(live, message_id, None, None, "clicked")
        return Response(status_code=204, headers={"Access-Control-Allow-Origin": "*"})

    routes = [Route(f"/sdk/{name}", serve(name), methods=["GET"]) for name in files]
    routes.append(Route("/v1/messages/{message_id}/opened", opened, methods=["POST"]))
    return routes


def _refuse(code: str, message: str, status: int = 400) -> Response:
    return JSONResponse(
        {"error": code, "message": message},
        status_code=status,
        headers={"Access-Control-Allow-Origin": "*"},
    )
