"""Rule sets at run time: ``PUT /v1/rules`` and the reload in every process.

``PUT /v1/rules`` takes the text of one ``.rules`` file, checks it exactly
as ``sessionpush check`` would, and only then saves it in the store under a
new version. The store announces the version (Redis pub/sub; the SQLite
store within its one process) and every gateway's :func:`follow_rules`
loads it and swaps the engine's rule set between two frames: connections
stay open and sessions keep their state. A rule set that does not check is
refused with every diagnostic, and the running one stays.

The endpoint is an admin action: it needs the key given to ``serve
--admin-key`` (or ``SESSIONPUSH_ADMIN_KEY``) as a bearer token. Without a
configured key it is disabled.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from sessionpush.dsl.check import check_files
from sessionpush.dsl.compile import compile_rules
from sessionpush.dsl.errors import RulesError
from sessionpush.dsl.parse import parse_with_diagnostics
from sessionpush.engine.core import Engine
from sessionpush.engine.rules import RuleSet
from sessionpush.gateway.admin import AdminKeys, require_admin
from sessionpush.gateway.apps import link_scheme_problem
from sessionpush.store.base import Store, StoredRules
from sessionpush.store.errors import StoreError

__all__ = ["compile_source", "follow_rules", "put_rules"]

log = logging.getLogger("sessionpush.gateway")

RULES_PATH = "api.rules"
"""The file name diagnostics of a rule set sent over HTTP point at."""

# A rule set is a few kilobytes; this bounds what one request may buffer.
MAX_RULES_BYTES = 1024 * 1024
# How long the watcher waits before resubscribing after losing the store.
_RETRY_SECONDS = 1.0


def compile_source(text: str, version: str) -> RuleSet:
    """Parse, check and compile one rule file's text.

    Raises:
        RulesError: With every diagnostic, as ``sessionpush check`` shows.
    """
    rule_file, problems = parse_with_diagnostics(text, RULES_PATH)
    lines = text.split("\n")
    for problem in check_files([rule_file]):
        found = 0 < problem.line <= len(lines)
        problems.append(
            replace(problem, source_line=lines[problem.line - 1] if found else None)
        )
    if problems:
        raise RulesError(sorted(problems, key=lambda d: (d.line, d.column)))
    return compile_rules([rule_file], version=version)


async def put_rules(
    request: Request, engine: Engine, admin_key: str | AdminKeys | None
) -> Response:
    """Check, save and announce a rule set; the old one stays if it fails.

    The rule set is the deployment's shared one, so only the operator key
    may replace it, not an app's own admin key.
    """
    refused = require_admin(request, admin_key)
    if refused is not None:
        return refused
    body = await request.body()
    if len(body) > MAX_RULES_BYTES:
        return PlainTextResponse(
            f"the rule set is {len(body)} bytes; at most {MAX_RULES_BYTES} are "
            f"accepted: split it or shorten it",
            status_code=413,
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return PlainTextResponse(
            f"the rule set is not UTF-8 text ({exc}); send the .rules file as is",
            status_code=400,
        )
    try:
        rules = compile_source(text, "checking")
    except RulesError as exc:
        return PlainTextResponse(
            f"the rule set does not check; version {engine.rules.version} stays "
            f"in force:\n\n{exc.render()}\n",
            status_code=422,
        )
    problem = _scheme_problem(engine, rules)
    if problem is not None:
        return PlainTextResponse(
            f"the rule set does not fit the app config; version "
            f"{engine.rules.version} stays in force:\n\n{problem}\n",
            status_code=422,
        )
    version = await engine.store.save_rules(text, engine.clock.now())
    rules.version = str(version)
    engine.set_rules(rules)
    log.info("rule set version %d saved: %d rules", version, len(rules))
    return JSONResponse({"version": str(version), "rules": len(rules)})


async def load_saved(store: Store, engine: Engine) -> StoredRules | None:
    """Swap in the store's latest rule set if it is newer than the engine's."""
    saved = await store.load_rules()
    if saved is None or str(saved.version) == engine.rules.version:
        return saved
    try:
        rules = compile_source(saved.source, str(saved.version))
    except RulesError as exc:
        # Saved rule sets were checked; only another version of sessionpush
        # with another language could have written this one.
        log.warning(
            "stored rule set version %d does not check here; keeping version %s: %s",
            saved.version,
            engine.rules.version,
            exc,
        )
        return saved
    problem = _scheme_problem(engine, rules)
    if problem is not None:
        # Checked against this config when saved; a process with another
        # config (an app that declares fewer schemes) keeps its rules.
        log.warning(
            "stored rule set version %d does not fit the app config; keeping "
            "version %s: %s",
            saved.version,
            engine.rules.version,
            problem,
        )
        return saved
    engine.set_rules(rules)
    log.info("rule set version %d loaded: %d rules", saved.version, len(rules))
    return saved


def _scheme_problem(engine: Engine, rules: RuleSet) -> str | None:
    """The shared rule set runs for every app without rules of its own."""
    for app, policy in engine.app_policy.items():
        if app not in engine.app_rules:
            problem = link_scheme_problem(app, policy, rules.rules)
            if problem is not None:
                return problem
    return None


async def follow_rules(store: Store, engine: Engine) -> None:
    """Load every rule set any process saves, for as long as the app runs.

    Each ``0`` from the store means "listening again": the latest is
    loaded then too, since pub/sub does not replay what was announced while
    this process was not subscribed.
    """
    while True:
        versions = store.rule_versions()
        try:
            async for _ in versions:
                await load_saved(store, engine)
        except StoreError as exc:
            log.warning("watching rule sets failed (%s); retrying", exc)
            await asyncio.sleep(_RETRY_SECONDS)
        finally:
            await versions.aclose()  # type: ignore[attr-defined]
