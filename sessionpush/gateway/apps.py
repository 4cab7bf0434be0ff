"""Apps (tenants) and the limits of the gateway, from one TOML file.

``serve --config FILE`` (or ``SESSIONPUSH_CONFIG``) names the file::

    delivery_config = "delivery.toml"   # optional; relative to this file

    [server]
    trusted_proxies = []                # whose X-Forwarded-For to believe

    [limits]                            # every key optional (security.md)
    frames_per_second = 50

    [apps.shop]
    signing_secret = "..."              # HMAC-SHA256 key of connection tokens
    admin_keys = ["..."]                # Authorization: Bearer KEY
    allowed_origins = ["https://shop.example"]
    public_key = "pk_shop_..."          # optional: anonymous web mode
    rules = ["rules/shop"]

    [apps.shop.policy]                  # optional; added to every rule
    caps = [{count = 3, per = "24h"}]   # per user, across all the app's rules
    quiet_hours = "22:00-08:00"         # for rules without their own; or "... drop"
    link_schemes = ["shop"]             # app links besides https: and paths

Decoding is strict: an unknown key, a wrong type, a short secret or a key
shared by two apps refuses the start with a :class:`ConfigError` naming the
key (never its value: the file holds secrets). Without a file the gateway
runs in development mode: one open app, ``default``, and no authentication,
which :func:`check_dev_mode_host` allows on loopback addresses only.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import msgspec

from sessionpush.engine.links import FORBIDDEN_SCHEMES, undeclared_schemes
from sessionpush.engine.policy import DEFAULT_POLICY, AppPolicy
from sessionpush.engine.rules import CompiledLimit, CompiledRule, QuietWindow
from sessionpush.errors import ConfigError
from sessionpush.gateway.limits import Limits

__all__ = [
    "DEFAULT_APP",
    "AppConfig",
    "GatewayConfig",
    "check_dev_mode_host",
    "dev_config",
    "is_loopback_origin",
    "link_scheme_problem",
    "load_gateway_config",
]

log = logging.getLogger("sessionpush.gateway")

DEFAULT_APP = "default"
#: RFC 2104 section 3: a key shorter than the hash output (32 bytes for
#: SHA-256) weakens the MAC.
MIN_SECRET = 32
MIN_ADMIN_KEY = 24

_APP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-fA-F:]+\](:[0-9]{1,5})?"
)

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]

_PER = re.compile(r"([0-9]{1,6})(s|m|h|d)")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.\-]{0,63}")
# What a link may never be, or is already allowed without declaring it.
_NOT_APP_SCHEMES = FORBIDDEN_SCHEMES | {"http", "https"}
_QUIET = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")


class _CapSection(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    per: Text


class _PolicySection(msgspec.Struct, forbid_unknown_fields=True):
    caps: list[_CapSection] = []
    quiet_hours: Text | None = None
    link_schemes: list[Text] = []


class _ServerSection(msgspec.Struct, forbid_unknown_fields=True):
    trusted_proxies: list[Text] = []


class _AppSection(msgspec.Struct, forbid_unknown_fields=True):
    signing_secret: Text
    admin_keys: list[Text] = []
    allowed_origins: list[Text] = []
    public_key: Text | None = None
    rules: list[Text] = []
    policy: _PolicySection = msgspec.field(default_factory=_PolicySection)


class _File(msgspec.Struct, forbid_unknown_fields=True):
    apps: dict[str, _AppSection]
    server: _ServerSection = msgspec.field(default_factory=_ServerSection)
    limits: Limits = msgspec.field(default_factory=Limits)
    delivery_config: Text | None = None


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One app (tenant). Secrets are left out of ``repr`` so that they
    cannot reach a log line or a traceback by accident."""

    name: str
    signing_secret: bytes = field(repr=False)
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    allowed_origins: frozenset[str] = frozenset()
    public_key: str | None = None
    rules: tuple[str, ...] = ()
    #: Global caps and the like, which the engine adds to every rule.
    policy: AppPolicy = DEFAULT_POLICY


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway enforces; ``dev_mode`` means no authentication."""

    apps: dict[str, AppConfig]
    limits: Limits = field(default_factory=Limits)
    trusted_proxies: tuple[str, ...] = ()
    delivery_config: str | None = None
    dev_mode: bool = False

    @property
    def origins(self) -> frozenset[str]:
        """Every origin some app allows: the handshake lets only these in."""
        return frozenset().union(*(app.allowed_origins for app in self.apps.values()))

    @property
    def policies(self) -> dict[str, AppPolicy]:
        """Each app's policy, as the engine takes it (``app_policy``)."""
        return {name: app.policy for name, app in self.apps.items()}


def dev_config(limits: Limits | None = None) -> GatewayConfig:
    """Development mode: the app ``default``, open to any client on loopback."""
    app = AppConfig(name=DEFAULT_APP, signing_secret=b"")
    return GatewayConfig(
        apps={DEFAULT_APP: app}, limits=limits or Limits(), dev_mode=True
    )


def load_gateway_config(path: str) -> GatewayConfig:
    """Read and check the app config; relative paths are relative to it."""
    file = Path(path)
    try:
        text = file.read_text()
        mode = file.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path!r} ({exc.strerror})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s holds secrets but other users may read it: chmod 600 %s", path, path
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        decoded = msgspec.convert(raw, _File)
    except msgspec.ValidationError as exc:
        # msgspec names the path of the key and never echoes its value.
        raise ConfigError(f"{path}: {exc}") from exc

    if not decoded.apps:
        raise ConfigError(f"{path}: no [apps.NAME] section: add one per app")
    apps = {name: _app(path, file.parent, name, s) for name, s in decoded.apps.items()}
    _check_unique(path, apps)
    delivery = decoded.delivery_config
    return GatewayConfig(
        apps=apps,
        limits=decoded.limits,
        trusted_proxies=tuple(_proxy(path, p) for p in decoded.server.trusted_proxies),
        delivery_config=None if delivery is None else str(file.parent / delivery),
    )


def _app(path: str, base: Path, name: str, section: _AppSection) -> AppConfig:
    where = f"{path}: apps.{name}"
    if not _APP_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: an app name is 1-64 letters, digits, '_', '.' or '-'"
        )
    if len(section.signing_secret.encode()) < MIN_SECRET:
        raise ConfigError(
            f"{where}.signing_secret: at least {MIN_SECRET} bytes are needed for "
            "HMAC-SHA256; generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    for i, key in enumerate(section.admin_keys):
        if len(key) < MIN_ADMIN_KEY:
            raise ConfigError(
                f"{where}.admin_keys[{i}]: at least {MIN_ADMIN_KEY} characters; "
                "generate one as for signing_secret"
            )
    for i, origin in enumerate(section.allowed_origins):
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"{where}.allowed_origins[{i}]: {origin!r} is not an origin; write "
                "scheme://host[:port] with no path, e.g. 'https://shop.example'"
            )
    if section.public_key is not None and not section.allowed_origins:
        raise ConfigError(
            f"{where}.public_key: anonymous web mode needs allowed_origins, the "
            "pages that may connect with the public key"
        )
    return AppConfig(
        name=name,
        signing_secret=section.signing_secret.encode(),
        admin_keys=tuple(section.admin_keys),
        allowed_origins=frozenset(o.lower() for o in section.allowed_origins),
        public_key=section.public_key,
        rules=tuple(str(base / r) for r in section.rules),
        policy=_policy(where, section.policy),
    )


def _policy(where: str, section: _PolicySection) -> AppPolicy:
    return AppPolicy(
        caps=tuple(
            _cap(f"{where}.policy.caps[{i}]", cap) for i, cap in enumerate(section.caps)
        ),
        quiet=None
        if section.quiet_hours is None
        else _quiet(f"{where}.policy.quiet_hours", section.quiet_hours),
        # With a config, app links are limited to the declared schemes (none
        # unless listed); only development mode accepts any of them.
        link_schemes=frozenset(
            _scheme(f"{where}.policy.link_schemes[{i}]", scheme)
            for i, scheme in enumerate(section.link_schemes)
        ),
    )


def _scheme(where: str, text: str) -> str:
    scheme = text.lower().removesuffix(":").removesuffix("://")
    if not _SCHEME_NAME.fullmatch(scheme):
        raise ConfigError(
            f"{where}: {text!r} is not a URL scheme; write the name alone, "
            "like 'shop' for shop://cart links"
        )
    if scheme in _NOT_APP_SCHEMES:
        raise ConfigError(
            f"{where}: '{scheme}' is not an app scheme: https: links are always "
            "allowed, and http:, javascript:, data:, vbscript:, file: and blob: "
            "never are"
        )
    return scheme


def link_scheme_problem(
    app: str, policy: AppPolicy, rules: Iterable[CompiledRule]
) -> str | None:
    """Why ``app`` may not run ``rules``: links whose app scheme its config
    does not declare (``check`` cannot know the config), or None."""
    if policy.link_schemes is None:
        return None
    found = undeclared_schemes(rules, policy.link_schemes)
    if not found:
        return None
    listed = "".join(f"\n  {where}" for where in found)
    return (
        f"apps.{app}: links use app schemes that apps.{app}.policy.link_schemes "
        f"does not declare:{listed}\nadd them to link_schemes in "
        f'[apps.{app}.policy] (like link_schemes = ["shop"]), or link to '
        "https: URLs or paths"
    )


def _quiet(where: str, text: str) -> QuietWindow:
    """``HH:MM-HH:MM``, optionally `` drop``, as a rule's ``quiet hours``."""
    window, _, drop = text.partition(" ")
    match = _QUIET.fullmatch(window)
    if match is None or drop not in ("", "drop"):
        raise ConfigError(
            f"{where}: {text!r} is not a quiet window; write 'HH:MM-HH:MM' in "
            "the user's local time, like '22:00-08:00', or '22:00-08:00 drop'"
        )
    hours_from, minutes_from, hours_to, minutes_to = map(int, match.groups())
    start, end = hours_from * 60 + minutes_from, hours_to * 60 + minutes_to
    if start == end:
        raise ConfigError(
            f"{where}: {text!r} starts and ends at the same time, so it is empty; "
            "leave quiet_hours out for no default quiet hours"
        )
    return QuietWindow(start, end, drop == "drop")


def _cap(where: str, cap: _CapSection) -> CompiledLimit:
    """``per`` as in a rule's ``limit``: a duration, ``day`` or ``session``."""
    if cap.per == "session":
        return CompiledLimit(cap.count, "session", None)
    if cap.per == "day":
        return CompiledLimit(cap.count, "day", None)
    match = _PER.fullmatch(cap.per)
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(
            f"{where}.per: {cap.per!r} is not a window; write a duration like "
            "'24h', '30m' or '7d', or 'day' (the user's calendar day) or 'session'"
        )
    return CompiledLimit(
        cap.count, "user", int(match.group(1)) * _SECONDS[match.group(2)]
    )


def _check_unique(path: str, apps: dict[str, AppConfig]) -> None:
    """A secret or admin key shared by two apps would let one act as the
    other, which is the one thing tenants must never do."""
    owner: dict[bytes, str] = {}
    for app in apps.values():
        named = [("signing_secret", app.signing_secret)] + [
            (f"admin_keys[{i}]", k.encode()) for i, k in enumerate(app.admin_keys)
        ]
        for key_name, value in named:
            other = owner.setdefault(value, f"apps.{app.name}.{key_name}")
            if other != f"apps.{app.name}.{key_name}":
                raise ConfigError(
                    f"{path}: apps.{app.name}.{key_name} is the same as {other}; "
                    "every app needs its own secrets and keys"
                )


def _proxy(path: str, text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(
            f"{path}: server.trusted_proxies: {text!r} is not an IP address or network"
        ) from None
    return text


def is_loopback_origin(origin: str) -> bool:
    """``http://localhost:3000`` and the like: the origins dev mode admits."""
    scheme, _, rest = origin.partition("://")
    host = (
        rest.rsplit(":", 1)[0] if not rest.startswith("[") else rest[1:].split("]")[0]
    )
    if scheme not in ("http", "https"):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_dev_mode_host(host: str) -> None:
    """Refuse to serve development mode (no authentication) beyond loopback."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"--host {host}: without --config (or SESSIONPUSH_CONFIG) the gateway "
            "runs in development mode with no authentication, which listens on "
            "loopback only; pass --config FILE with [apps.NAME] sections "
            "(docs/security.md) to serve other hosts"
        )
