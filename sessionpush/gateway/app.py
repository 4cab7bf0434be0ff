"""The gateway: a Starlette app serving the websocket protocol and HTTP.

Routes:

- ``GET /healthz``: liveness, with the rule set version and counts.
- ``WS /v1/session``: the session protocol (``docs/protocol.md``), served
  by :class:`~sessionpush.gateway.connection.Connection` straight on the
  socket, not through ASGI (``shutdown.server_config`` plugs it into
  uvicorn's websocket upgrade).
- Push delivery: ``PUT /v1/users/{user}/devices/{device}``,
  ``GET /v1/vapid-public-key``, ``GET /r/{message_id}`` (see
  :mod:`sessionpush.gateway.push_api`).
- ``PUT /v1/rules`` (admin key): check, save and announce a rule set; every
  process sharing the store loads it (``gateway.rules_admin``).
- ``DELETE /v1/users/{user}?app=APP`` (admin key): erase a user (see
  :mod:`sessionpush.gateway.erasure`).
- The web SDK at ``/sdk/sessionpush.js`` and its service worker at
  ``/sdk/sw.js``, and the worker's open reports (``gateway.sdk_files``).
- Operators (``gateway.reports_api``): ``GET /`` (the dashboard),
  ``GET /v1/reports``, ``GET /v1/users/{id}/explain``, ``GET /metrics``,
  ``GET /v1/dashboard/stream``; all data behind the admin key.
- ``POST /v1/playback/drain`` (``--clock playback`` only): run the virtual
  clock on until no timer is pending and return every decision as JSON
  lines, so that ``replay --via`` can compare a gateway run with an
  in-process one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionpush.dsl import load_ruleset
from sessionpush.engine.clock import Clock, VirtualClock, WallClock
from sessionpush.engine.core import Engine
from sessionpush.engine.rules import RuleSet
from sessionpush.engine.timers import fire_due
from sessionpush.errors import ConfigError
from sessionpush.gateway.admin import AdminKeys
from sessionpush.gateway.apps import (
    GatewayConfig,
    dev_config,
    link_scheme_problem,
    load_gateway_config,
)
from sessionpush.gateway.connection import SERVICE_KEY, SessionService
from sessionpush.gateway.erasure import erasure_routes
from sessionpush.gateway.guard import Guard
from sessionpush.gateway.metrics import GatewayMetrics
from sessionpush.gateway.push_api import push_routes
from sessionpush.gateway.reports_api import report_routes
from sessionpush.gateway.rules_admin import follow_rules, load_saved, put_rules
from sessionpush.gateway.sdk_files import sdk_routes
from sessionpush.gateway.shutdown import close_gateway
from sessionpush.replay.decisions import decision_record
from sessionpush.store import open_store
from sessionpush.transports.config import build_queue, load_config
from sessionpush.transports.outbox import Outbox

__all__ = ["Settings", "create_app"]

log = logging.getLogger("sessionpush.gateway")


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``sessionpush serve`` is started with."""

    rules: tuple[str, ...] = ("examples/rules",)
    store: str = "sessionpush.db"
    outbox: str = "outbox.jsonl"
    clock: str = "wall"
    grace: float = 30.0
    idle: float = 1800.0
    #: TOML file with provider credentials (docs/delivery.md); None: outbox only.
    delivery_config: str | None = None
    #: The operator key: HTTP endpoints changing state take it for every app
    #: (``--admin-key``); apps' own admin keys come from the app config.
    admin_key: str | None = field(default=None, repr=False)
    #: The app config file (``--config``); None: development mode.
    config: str | None = None
    #: The app config, already loaded (``serve`` loads it to set up uvicorn);
    #: wins over ``config``.
    gateway: GatewayConfig | None = None
    #: Seconds between two claims of due durable timers (live clock only):
    #: the most a timer fires late when the store holds nothing due sooner.
    timer_poll: float = 0.1
    #: Seconds a claim holds its timers: how long a process that died
    #: holding claims delays them.
    timer_lease: float = 30.0
    #: Seconds between two live updates of the dashboard, and how many
    #: updates pass between two reports (a report reads the whole log).
    dashboard_interval: float = 1.0
    dashboard_report_every: int = 5


async def _claim_timers(engine: Engine, poll: float, lease: float) -> None:
    """Claim and fire due durable timers from the store, forever.

    A full batch means more are due: claim again at once; otherwise wait
    one poll interval. Any process of a shared store may fire any timer.
    """
    while True:
        try:
            claimed = await fire_due(engine, lease=lease)
        except Exception:
            log.exception("firing durable timers failed; retrying in one second")
            await asyncio.sleep(1.0)
            continue
        if claimed == 0:
            await asyncio.sleep(poll)
        else:
            await asyncio.sleep(0)  # let connections run between batches


async def _run_timers(engine: Engine) -> None:
    """Sleep until the next deadline, fire what is due, repeat."""
    wake = asyncio.Event()
    engine.on_new_deadline = wake.set
    while True:
        wake.clear()
        due = engine.next_due()
        timeout = None if due is None else max(0.0, due - engine.clock.now())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)
        try:
            await engine.advance()
        except Exception:
            log.exception("firing timers failed; retrying in one second")
            await asyncio.sleep(1.0)


def create_app(settings: Settings) -> Starlette:
    """Build the gateway app; rules and store open when the app starts."""
    gateway = settings.gateway
    if gateway is None:
        gateway = (
            dev_config()
            if settings.config is None
            else load_gateway_config(settings.config)
        )
    rules = load_ruleset(list(settings.rules))
    # One rule set per app that names its own rules; the others share --rules.
    app_rules: dict[str, RuleSet] = {
        name: load_ruleset(list(app.rules))
        for name, app in gateway.apps.items()
        if app.rules
    }
    # Links whose app scheme an app does not declare refuse the start here,
    # since `sessionpush check` cannot know the app config.
    for name, app_config in gateway.apps.items():
        app_set = app_rules.get(name, rules)
        problem = link_scheme_problem(name, app_config.policy, app_set.rules)
        if problem is not None:
            raise ConfigError(problem)
    # Read at creation, so that a bad config refuses to start before serving.
    delivery_path = settings.delivery_config or gateway.delivery_config
    delivery_config = None if delivery_path is None else load_config(delivery_path)
    clock: Clock = VirtualClock() if settings.clock == "playback" else WallClock()
    state: dict[str, Engine] = {}
    keys = AdminKeys(
        settings.admin_key,
        {name: app.admin_keys for name, app in gateway.apps.items()},
    )
    metrics = GatewayMetrics(lambda: state.get("engine"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Mapping[str, object]]:
        store = open_store(settings.store)
        await store.open()
        outbox = Outbox(settings.outbox)
        delivery = (
            None
            if delivery_config is None
            else build_queue(delivery_config, store, clock)
        )
        engine = Engine(
            rules,
            store,
            clock,
            fallback=outbox,
            delivery=delivery,
            grace=settings.grace,
            idle=settings.idle,
            app_rules=app_rules,
            app_policy=gateway.policies,
        )
        engine.listeners.append(metrics.on_decision)
        if delivery is not None:
            delivery.listeners.append(metrics.on_outcome)
        # A rule set saved through PUT /v1/rules is the deployment's current
        # one: it wins over the files, so a process started later agrees
        # with the others.
        await load_saved(store, engine)
        await engine.start()
        state["engine"] = engine
        tasks = [asyncio.create_task(follow_rules(store, engine))]
        if not clock.virtual:
            tasks.append(asyncio.create_task(_run_timers(engine)))
            tasks.append(
                asyncio.create_task(
                    _claim_timers(engine, settings.timer_poll, settings.timer_lease)
                )
            )
        log.info(
            "gateway up: %d rules (version %s), store %s, outbox %s, clock %s",
            len(engine.rules),
            engine.rules.version,
            store,
            settings.outbox,
            settings.clock,
            extra={
                "event": "gateway_up",
                "rules": len(engine.rules),
                "rules_version": engine.rules.version,
                "store": str(store),
                "clock": settings.clock,
            },
        )
        for name, app_set in app_rules.items():
            log.info(
                "app %s: %d rules (version %s)", name, len(app_set), app_set.version
            )
        if gateway.dev_mode:
            log.warning(
                "development mode: no --config, so any client may connect as any "
                "user of any app, without a token; loopback only"
            )
        else:
            log.info("apps: %s", ", ".join(sorted(gateway.apps)))
        try:
            # uvicorn hands this state to every websocket it upgrades.
            yield {SERVICE_KEY: SessionService(engine, guard, metrics)}
        finally:
            await close_gateway(tasks, delivery, outbox, store)

    async def healthz(request: Request) -> Response:
        engine = state["engine"]
        return JSONResponse(
            {
                "status": "ok",
                "rules": len(engine.rules),
                "rules_version": engine.rules.version,
                "sessions": engine.sessions,
                "connections": len(guard.connections),
                "pending": engine.pending(),
            }
        )

    async def rules_put(request: Request) -> Response:
        return await put_rules(request, state["engine"], keys)

    async def drain(request: Request) -> Response:
        engine = state["engine"]
        await engine.drain()
        decisions = await engine.store.decisions()
        lines = b"".join(
            msgspec.json.encode(decision_record(d)) + b"\n" for d in decisions
        )
        return Response(lines, media_type="application/x-ndjson")

    def allow_loopback() -> bool:
        return (
            delivery_config is not None
            and delivery_config.delivery.allow_loopback_endpoints
        )

    guard = Guard(gateway, limited=not clock.virtual, allow_loopback=allow_loopback)
    routes: list[Route] = [
        Route("/healthz", healthz),
        *push_routes(lambda: state["engine"], keys, allow_loopback),
        Route("/v1/rules", rules_put, methods=["PUT"]),
        *erasure_routes(lambda: state["engine"], keys, gateway),
        *sdk_routes(lambda: state["engine"]),
        *report_routes(
            lambda: state["engine"],
            metrics,
            keys,
            interval=settings.dashboard_interval,
            report_every=settings.dashboard_report_every,
        ),
    ]
    if clock.virtual:
        routes.append(Route("/v1/playback/drain", drain, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)
