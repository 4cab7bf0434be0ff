"""The operator's HTTP endpoints: reports, explain, metrics, the dashboard.

- ``GET /v1/reports?rule=R&since=T`` (admin key): the per-rule report as
  JSON (``sessionpush report --json``); ``since`` is epoch seconds or
  ISO-8601.
- ``GET /v1/users/{user}/explain?rule=R&app=A`` (admin key): the user's
  decision trail, newest first (``sessionpush explain --json``).
- ``GET /metrics`` (admin key, as a bearer token a scraper can send): the
  Prometheus text format (:mod:`sessionpush.gateway.metrics`).
- ``GET /``: the dashboard page. It is code without data: every number it
  shows comes from ``/v1/dashboard/stream`` and the endpoints above, which
  all require the admin key the page asks for.
- ``GET /v1/dashboard/stream`` (admin key): server-sent events; ``live``
  every ``interval`` seconds (connections, sessions, events and their
  rate, rule set version) and ``report`` every ``report_every`` of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from importlib.resources import files

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sessionpush.engine.clock import parse_iso
from sessionpush.engine.core import Engine
from sessionpush.gateway.admin import AdminKeys, require_admin
from sessionpush.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from sessionpush.report.explain import explain
from sessionpush.report.outcomes import Report, build_report

__all__ = ["report_routes"]

# A stream ends after this long and the page opens a new one, so that no
# response outlives a shutdown by more than this.
_STREAM_SECONDS = 300.0


def _bad(code: str, message: str) -> Response:
    return JSONResponse({"error": code, "message": message}, status_code=400)


async def current_report(
    engine: Engine, rule: str | None = None, since: float | None = None
) -> Report:
    """The report of the engine's rule set over everything in its store."""
    store = engine.store
    return build_report(
        engine.rules.rules,
        await store.decisions(),
        await store.goals(rule=rule),
        await store.outcomes(),
        rules_version=engine.rules.version,
        since=since,
        only=rule,
    )


def report_routes(
    engine: Callable[[], Engine],
    metrics: GatewayMetrics,
    admin_key: str | AdminKeys | None,
    *,
    interval: float = 1.0,
    report_every: int = 5,
) -> list[Route]:
    """The routes above, for the gateway's route list."""

    async def reports(request: Request) -> Response:
        if (refused := require_admin(request, admin_key)) is not None:
            return refused
        since_text = request.query_params.get("since")
        since = None
        if since_text:
            try:
                since = float(since_text)
            except ValueError:
                try:
                    since = parse_iso(since_text)
                except ValueError:
                    return _bad("bad_since", "since must be epoch seconds or ISO-8601")
        report = await current_report(engine(), request.query_params.get("rule"), since)
        return Response(msgspec.json.encode(report), media_type="application/json")

    async def explain_user(request: Request) -> Response:
        if (refused := require_admin(request, admin_key)) is not None:
            return refused
        user = request.path_params["user"]
        app = request.query_params.get("app")
        store = engine().store
        entries = explain(
            user,
            engine().rules.rules,
            await store.decisions(app=app, user=user),
            await store.goals(app=app),
            await store.outcomes(app=app),
            rule=request.query_params.get("rule"),
        )
        body = {"user": user, "decisions": entries}
        return Response(msgspec.json.encode(body), media_type="application/json")

    async def metrics_text(request: Request) -> Response:
        if (refused := require_admin(request, admin_key)) is not None:
            return refused
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

    async def dashboard(request: Request) -> Response:
        page = files("sessionpush.gateway").joinpath("dashboard.html").read_text()
        return HTMLResponse(
            page,
            headers={
                # The page runs only its own inline code and talks only to
                # this gateway.
                "Content-Security-Policy": "default-src 'none'; "
                "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'; img-src 'self' data:",
                "Cache-Control": "no-store",
            },
        )

    async def stream(request: Request) -> Response:
        if (refused := require_admin(request, admin_key)) is not None:
            return refused
        return StreamingResponse(
            _events(engine, metrics, interval, report_every),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    return [
        Route("/", dashboard),
        Route("/v1/reports", reports),
        Route("/v1/users/{user}/explain", explain_user),
        Route("/v1/dashboard/stream", stream),
        Route("/metrics", metrics_text),
    ]


async def _events(
    engine: Callable[[], Engine],
    metrics: GatewayMetrics,
    interval: float,
    report_every: int,
) -> AsyncIterator[bytes]:
    started = time.monotonic()
    last_events, last_time = engine().events_in, started
    tick = 0
    while time.monotonic() - started < _STREAM_SECONDS:
        live = engine()
        now = time.monotonic()
        rate = (live.events_in - last_events) / max(now - last_time, 1e-9)
        last_events, last_time = live.events_in, now
        numbers = {
            "connections": metrics.open_connections,
            "sessions": live.sessions,
            "events": live.events_in,
            "event_rate": 0.0 if tick == 0 else rate,
            "rules_version": live.rules.version,
            "rules": len(live.rules),
        }
        yield b"event: live\ndata: " + msgspec.json.encode(numbers) + b"\n\n"
        if tick % report_every == 0:
            report = await current_report(live)
            yield b"event: report\ndata: " + msgspec.json.encode(report) + b"\n\n"
        tick += 1
        await asyncio.sleep(interval)
