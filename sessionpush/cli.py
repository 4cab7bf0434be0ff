"""The ``sessionpush`` command: serve, check, fmt, replay, report, explain,
keys, token.

Each subcommand is a thin adapter: it parses options, configures logging
(libraries attach no handlers; this is the one place that does) and calls
into the package. Errors a user can cause print one clear message and exit
with status 1 or 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import msgspec

from sessionpush import __version__
from sessionpush.errors import SessionpushError

if TYPE_CHECKING:
    from sessionpush.engine.rules import RuleSet
    from sessionpush.report.outcomes import Report
    from sessionpush.store.base import Store

__all__ = ["main"]

log = logging.getLogger("sessionpush.cli")

DEFAULT_RULES = "examples/rules"


def _configure_logging(level: str, fmt: str) -> None:
    from sessionpush.logs import configure

    configure(level, fmt)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0-65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds"
        ) from None
    # nan compares false with everything: it would pass the test below and
    # then never let a deadline come due.
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text} must be a finite number of seconds above 0"
        )
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> float:
    unit = _UNITS.get(text[-1:])
    if unit is not None and text[:-1].replace(".", "", 1).isdigit():
        import time

        return time.time() - float(text[:-1]) * unit
    from sessionpush.engine.clock import parse_iso

    try:
        return parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO-8601 time (2024-05-01T00:00:00Z) nor a "
            "duration (24h, 7d)"
        ) from None


def _store_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--store",
        default="sessionpush.db",
        help="the store serve writes to: an SQLite file, redis://HOST:PORT/DB or "
        "redis+cluster://HOST:PORT[,HOST:PORT...]",
    )
    command.add_argument(
        "--rules",
        action="append",
        metavar="PATH",
        help="the rules, for goals, holdouts and variants (default: the rule "
        f"set saved in the store, else {DEFAULT_RULES})",
    )
    command.add_argument("--app", help="only this app's decisions")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessionpush",
        description="Real-time rules engine for session-triggered push.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SESSIONPUSH_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("SESSIONPUSH_LOG_FORMAT", "auto"),
        choices=["auto", "json", "text"],
        help="json: one object a line; auto (default): json unless standard "
        "error is a terminal",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--rules",
        action="append",
        metavar="PATH",
        help=f"a .rules file or a directory of them (repeatable; default "
        f"{DEFAULT_RULES})",
    )
    serve.add_argument(
        "--store",
        default="sessionpush.db",
        help="an SQLite file path, or redis://HOST:PORT/DB (one Redis) or "
        "redis+cluster://HOST:PORT[,HOST:PORT...] (a Redis Cluster) to share "
        "state between gateway processes (docs/deploy.md)",
    )
    serve.add_argument(
        "--outbox", default="outbox.jsonl", help="file the outbox appends pushes to"
    )
    serve.add_argument("--clock", choices=["wall", "playback"], default="wall")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--grace", type=_seconds, default=30.0, help="seconds")
    serve.add_argument("--idle", type=_seconds, default=1800.0, help="seconds")
    serve.add_argument(
        "--delivery-config",
        default=os.environ.get("SESSIONPUSH_DELIVERY_CONFIG"),
        metavar="FILE",
        help="TOML file with push provider credentials (docs/delivery.md; "
        "default $SESSIONPUSH_DELIVERY_CONFIG, else pushes go to the outbox)",
    )
    serve.add_argument(
        "--timer-lease",
        type=_seconds,
        default=30.0,
        help="seconds a process holds the due timers it claimed; a process that "
        "dies delays them this long",
    )
    serve.add_argument(
        "--config",
        default=os.environ.get("SESSIONPUSH_CONFIG"),
        metavar="FILE",
        help="TOML app config: apps, their secrets, admin keys, origins and "
        "rules, and the limits (docs/security.md; default $SESSIONPUSH_CONFIG, "
        "else development mode: no authentication, loopback only)",
    )
    serve.add_argument(
        "--admin-key",
        default=os.environ.get("SESSIONPUSH_ADMIN_KEY"),
        metavar="KEY",
        help="operator key: HTTP endpoints changing state (PUT /v1/rules, device "
        "registration, erasure) take it for every app as 'Authorization: Bearer "
        "KEY' (default $SESSIONPUSH_ADMIN_KEY)",
    )

    token = sub.add_parser(
        "token", help="sign a connection token, as an app's backend would"
    )
    token.add_argument(
        "--config", default=os.environ.get("SESSIONPUSH_CONFIG"), metavar="FILE"
    )
    token.add_argument("--app", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--expires", type=_seconds, default=900.0, help="seconds")

    keys = sub.add_parser("keys", help="manage provider keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = keys_sub.add_parser(
        "generate", help="write a new VAPID key pair for an app's Web Push"
    )
    generate.add_argument("--app", default="default", help="the app the key is for")
    generate.add_argument(
        "--dir", default="keys", help="where <app>.pem goes (webpush.keys_dir)"
    )

    check = sub.add_parser("check", help="check .rules files and directories")
    check.add_argument("paths", nargs="+", metavar="PATH")

    fmt = sub.add_parser("fmt", help="format .rules files in place")
    fmt.add_argument("paths", nargs="+", metavar="PATH")
    fmt.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if a file is not formatted",
    )

    report = sub.add_parser(
        "report", help="per-rule outcomes and lift against the holdout"
    )
    _store_options(report)
    report.add_argument("--rule", metavar="R", help="only this rule")
    report.add_argument(
        "--since",
        type=_since,
        metavar="T",
        help="only decisions made since T: an ISO-8601 time, or a duration "
        "back from now such as 24h or 7d",
    )
    report.add_argument("--json", action="store_true", help="print JSON")

    explain = sub.add_parser(
        "explain", help="why a user did or did not get each rule's message"
    )
    _store_options(explain)
    explain.add_argument("--user", required=True, metavar="U")
    explain.add_argument("--rule", metavar="R", help="only this rule")
    explain.add_argument("--json", action="store_true", help="print JSON")

    replay = sub.add_parser("replay", help="replay recorded sessions through the rules")
    replay.add_argument("--rules", action="append", required=True, metavar="PATH")
    replay.add_argument("--events", required=True, metavar="FILE")
    replay.add_argument(
        "--format", required=True, choices=["rees46", "otto", "taobao", "jsonl"]
    )
    replay.add_argument(
        "--out",
        default="replay-decisions.jsonl",
        help="where the decisions go, one JSON object a line ('-' for stdout)",
    )
    replay.add_argument("--outbox", default=None, help="also write pushes here")
    replay.add_argument(
        "--via",
        metavar="URL",
        help="send the sessions through a running gateway (ws://HOST:PORT/v1/"
        "session, started with --clock playback) instead of in process",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "keys":
            return _keys_generate(args)
        if args.command == "token":
            return _token(args)
        if args.command == "check":
            from sessionpush.dsl.load import run_check

            return run_check(args.paths, sys.stdout)
        if args.command == "fmt":
            from sessionpush.dsl.load import run_fmt

            return run_fmt(args.paths, sys.stdout, check=args.check)
        if args.command in ("report", "explain"):
            return asyncio.run(_measure(args))
        return asyncio.run(_replay(args))
    except SessionpushError as exc:
        print(f"sessionpush {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A file that cannot be opened or written: say which, no traceback.
        print(f"sessionpush {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    from sessionpush.errors import ConfigError
    from sessionpush.gateway.app import Settings, create_app
    from sessionpush.gateway.apps import (
        check_dev_mode_host,
        dev_config,
        load_gateway_config,
    )
    from sessionpush.gateway.shutdown import GracefulServer, server_config

    if args.config is None:
        gateway = dev_config()
        check_dev_mode_host(args.host)
    else:
        gateway = load_gateway_config(args.config)
    if args.clock == "playback":
        try:
            check_dev_mode_host(args.host)
        except ConfigError:
            # Playback lets clients set the server's clock: never beyond loopback.
            raise ConfigError(
                f"--clock playback lets clients move the server's clock; it "
                f"listens on loopback only, not on --host {args.host}"
            ) from None
    rules = args.rules
    if rules is None:
        # When every app names its own rules, nothing uses a shared set:
        # do not ask for the default one to exist.
        own = not gateway.dev_mode and all(a.rules for a in gateway.apps.values())
        rules = [] if own else [DEFAULT_RULES]
    settings = Settings(
        rules=tuple(rules),
        store=args.store,
        outbox=args.outbox,
        clock=args.clock,
        grace=args.grace,
        idle=args.idle,
        delivery_config=args.delivery_config,
        admin_key=args.admin_key or None,
        timer_lease=args.timer_lease,
        gateway=gateway,
    )
    app = create_app(settings)
    # The ping interval is the heartbeat the welcome frame announces; a
    # half-open socket is closed within the interval plus the timeout.
    GracefulServer(server_config(app, gateway, args.host, args.port)).run()
    return 0


def _token(args: argparse.Namespace) -> int:
    from sessionpush.errors import ConfigError
    from sessionpush.gateway.apps import load_gateway_config
    from sessionpush.gateway.auth import sign_token

    if args.config is None:
        raise ConfigError("token: pass --config FILE (or SESSIONPUSH_CONFIG)")
    app = load_gateway_config(args.config).apps.get(args.app)
    if app is None:
        raise ConfigError(f"token: no [apps.{args.app}] in {args.config}")
    print(sign_token(app.signing_secret, app.name, args.user, args.expires))
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    from sessionpush.errors import ConfigError
    from sessionpush.transports.vapid import generate_key_file, public_key_b64

    path = Path(args.dir) / f"{args.app}.pem"
    try:
        key = generate_key_file(path)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists already; a new key unsubscribes every browser "
            "subscribed with the old one, so remove the file yourself if you mean it"
        ) from None
    print(f"wrote the private key to {path} (keep it secret)")
    print(f"public key (applicationServerKey): {public_key_b64(key)}")
    return 0


async def _replay(args: argparse.Namespace) -> int:
    from sessionpush.dsl import load_ruleset
    from sessionpush.replay.decisions import decision_from_record, decision_record
    from sessionpush.replay.formats import load_events
    from sessionpush.replay.run import replay_measured, replay_via
    from sessionpush.report.outcomes import build_report

    rules = load_ruleset(args.rules)
    events = load_events(args.events, args.format)
    if args.out != "-":
        # Fail on an unwritable --out now, not after the whole replay ran.
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).open("wb").close()
    log.info(
        "replaying %d events of %s through %d rules",
        len(events),
        args.events,
        len(rules),
    )
    if args.via:
        records = await replay_via(args.via, events)
        report = build_report(
            rules.rules,
            [decision_from_record(r) for r in records],
            [],
            [],
            rules_version=rules.version,
        )
    else:
        decisions, report = await replay_measured(rules, events, args.outbox)
        records = [decision_record(d) for d in decisions]

    lines = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
    if args.out == "-":
        sys.stdout.buffer.write(lines)
    else:
        Path(args.out).write_bytes(lines)
    _print_report(report, sys.stdout)
    if args.via:
        print(
            "\nconversions are counted in the gateway's store: see its GET /v1/reports"
        )
    if args.out != "-":
        print(f"\n{len(records)} decisions written to {args.out}")
    return 0


def _print_report(report: Report, out: TextIO) -> None:
    from sessionpush.report.render import plain_text, print_rich

    if out.isatty():
        print_rich(report, out)
    else:
        print(plain_text(report), file=out)


async def _measure(args: argparse.Namespace) -> int:
    from sessionpush.report.explain import explain, explain_text
    from sessionpush.report.outcomes import build_report
    from sessionpush.store import open_store

    store = open_store(args.store)
    await store.open()
    try:
        rules = await _report_rules(store, args.rules)
        if args.command == "explain":
            found = await store.decisions(app=args.app, user=args.user)
            goals = await store.goals(app=args.app)
            outcomes = await store.outcomes(app=args.app)
        else:
            found = await store.decisions(app=args.app)
            goals = await store.goals(app=args.app, rule=args.rule)
            outcomes = await store.outcomes(app=args.app)
    finally:
        await store.close()
    if args.command == "explain":
        entries = explain(
            args.user, rules.rules, found, goals, outcomes, rule=args.rule
        )
        if args.json:
            sys.stdout.buffer.write(msgspec.json.encode(entries) + b"\n")
        else:
            print(explain_text(entries))
        return 0
    report = build_report(
        rules.rules,
        found,
        goals,
        outcomes,
        rules_version=rules.version,
        since=args.since,
        only=args.rule,
    )
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(report) + b"\n")
    else:
        _print_report(report, sys.stdout)
    return 0


async def _report_rules(store: Store, paths: list[str] | None) -> RuleSet:
    from sessionpush.dsl import load_ruleset

    if paths:
        return load_ruleset(paths)
    saved = await store.load_rules()
    if saved is not None:
        from sessionpush.gateway.rules_admin import compile_source

        return compile_source(saved.source, str(saved.version))
    return load_ruleset([DEFAULT_RULES])
