"""Provider credentials and delivery settings, from one TOML file.

``serve --delivery-config FILE`` (or ``SESSIONPUSH_DELIVERY_CONFIG``) names
the file; ``docs/delivery.md`` shows every key. The file is decoded
strictly: an unknown key, a wrong type or an unreadable credential refuses
the start with a :class:`~sessionpush.errors.ConfigError` naming the key.
Without a file, pushes go to the outbox only.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec

from sessionpush.engine.clock import Clock
from sessionpush.errors import ConfigError
from sessionpush.store.base import Store
from sessionpush.transports.apns import ApnsTransport
from sessionpush.transports.apns_token import (
    MAX_REFRESH,
    MIN_REFRESH,
    ProviderToken,
    load_signing_key,
)
from sessionpush.transports.base import Transport
from sessionpush.transports.fcm import FcmTransport
from sessionpush.transports.google_oauth import AccessTokens, load_service_account
from sessionpush.transports.queue import DeliveryQueue
from sessionpush.transports.vapid import VapidSigner, check_subject, load_key_file
from sessionpush.transports.webhook import Webhook, WebhookTransport
from sessionpush.transports.webpush import WebPushTransport

__all__ = ["DeliveryConfig", "build_queue", "load_config"]


class DeliverySection(msgspec.Struct, forbid_unknown_fields=True):
    concurrency: int = 64
    timeout: float = 10.0
    max_attempts: int = 5
    click_base: str | None = None
    #: Testing only: let subscriptions point at loopback push servers.
    allow_loopback_endpoints: bool = False


class WebPushSection(msgspec.Struct, forbid_unknown_fields=True):
    subject: str
    keys_dir: str = "keys"
    token_lifetime: float = 12 * 3600.0


class ApnsSection(msgspec.Struct, forbid_unknown_fields=True):
    team_id: str
    key_id: str
    key_file: str
    #: The bundle id (``apns-topic``) of each app, by app name.
    topics: dict[str, str]
    token_refresh: float = 45 * 60.0


class FcmSection(msgspec.Struct, forbid_unknown_fields=True):
    #: The service-account key file of each app's Firebase project.
    credentials: dict[str, str]


class WebhookSection(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    #: The signing secret: from an environment variable or a file, never
    #: written in the config itself.
    secret_env: str | None = None
    secret_file: str | None = None


class DeliveryConfig(msgspec.Struct, forbid_unknown_fields=True):
    delivery: DeliverySection = msgspec.field(default_factory=DeliverySection)
    webpush: WebPushSection | None = None
    apns: ApnsSection | None = None
    fcm: FcmSection | None = None
    webhooks: dict[str, WebhookSection] = {}

    base: Path = Path(".")


def load_config(path: str) -> DeliveryConfig:
    """Read and check the file; relative paths in it are relative to it."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text())
    except OSError as exc:
        raise ConfigError(
            f"--delivery-config: cannot read {path!r} ({exc.strerror})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = msgspec.convert(raw, DeliveryConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    config.base = file.parent
    section = config.delivery
    if section.concurrency < 1 or section.max_attempts < 1 or section.timeout <= 0:
        raise ConfigError(
            f"{path}: delivery.concurrency and delivery.max_attempts must be at "
            "least 1 and delivery.timeout more than 0"
        )
    if config.webpush is not None:
        check_subject(config.webpush.subject)
    if config.apns is not None:
        check_apns(config.apns, config.base)
    if config.fcm is not None:
        if not config.fcm.credentials:
            raise ConfigError(
                "fcm.credentials: name the service-account key file of at "
                'least one app, e.g. [fcm.credentials] default = "firebase.json"'
            )
        for app, key_file in config.fcm.credentials.items():
            load_service_account(
                config.base / key_file,
                f"fcm.credentials.{app}",
                allow_loopback=section.allow_loopback_endpoints,
            )
    load_webhooks(config)
    return config


_WEBHOOK_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: HMAC-SHA256 keys shorter than the hash add no strength (RFC 2104
#: section 3); 16 bytes is the least we take.
MIN_SECRET = 16


def load_webhooks(config: DeliveryConfig) -> dict[str, Webhook]:
    """The ``[webhooks.NAME]`` sections, checked, with their secrets read."""
    hooks = {}
    allow_loopback = config.delivery.allow_loopback_endpoints
    for name, section in config.webhooks.items():
        key = f"webhooks.{name}"
        if not _WEBHOOK_NAME.fullmatch(name):
            raise ConfigError(
                f"{key}: a webhook name is 1 to 64 letters, digits, '_' or '-'"
            )
        url = urlsplit(section.url)
        loopback = url.scheme == "http" and url.hostname == "127.0.0.1"
        if not url.hostname or not (
            url.scheme == "https" or (allow_loopback and loopback)
        ):
            raise ConfigError(
                f"{key}.url: {section.url!r} is not an https URL; decisions "
                "carry user ids and must not cross the network in clear"
            )
        if (section.secret_env is None) == (section.secret_file is None):
            raise ConfigError(
                f"{key}: set exactly one of secret_env (an environment "
                "variable) or secret_file (a file) for the signing secret"
            )
        if section.secret_env is not None:
            value = os.environ.get(section.secret_env)
            if value is None:
                raise ConfigError(
                    f"{key}.secret_env: the environment variable "
                    f"{section.secret_env} is not set; generate a secret with "
                    "`openssl rand -hex 32` and export it"
                )
            secret = value.strip().encode()
        else:
            assert section.secret_file is not None
            path = config.base / section.secret_file
            try:
                secret = path.read_bytes().strip()
            except OSError as exc:
                raise ConfigError(
                    f"{key}.secret_file: cannot read {str(path)!r} ({exc.strerror})"
                ) from exc
        if len(secret) < MIN_SECRET:
            raise ConfigError(
                f"{key}: the signing secret is {len(secret)} bytes; use at "
                f"least {MIN_SECRET} (`openssl rand -hex 32` gives 64)"
            )
        hooks[name] = Webhook(name=name, url=section.url, secret=secret)
    return hooks


#: Apple's team and key ids are 10 upper-case letters and digits.
_APPLE_ID = re.compile(r"[A-Z0-9]{10}")
#: A bundle id: reverse-DNS letters, digits, hyphens and dots.
_BUNDLE_ID = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def check_apns(section: ApnsSection, base: Path) -> None:
    """Refuse an APNs section that could never authenticate."""
    for key, value in (("team_id", section.team_id), ("key_id", section.key_id)):
        if not _APPLE_ID.fullmatch(value):
            raise ConfigError(
                f"apns.{key}: {value!r} is not 10 upper-case letters and digits; "
                "copy it from the Apple Developer account (Membership, Keys)"
            )
    if not MIN_REFRESH <= section.token_refresh <= MAX_REFRESH:
        raise ConfigError(
            f"apns.token_refresh: {section.token_refresh:g} s is outside "
            "1200-3600 s; Apple asks for a new token every 20 to 60 minutes"
        )
    if not section.topics:
        raise ConfigError(
            "apns.topics: name the bundle id of at least one app, e.g. "
            '[apns.topics] default = "com.shop.app"'
        )
    for app, topic in section.topics.items():
        if not _BUNDLE_ID.fullmatch(topic):
            raise ConfigError(
                f"apns.topics.{app}: {topic!r} is not a bundle id such as com.shop.app"
            )
    load_signing_key(base / section.key_file, "apns.key_file")


def webpush_signers(
    section: WebPushSection, base: Path, clock: Clock
) -> dict[str, VapidSigner]:
    """One signer per ``<app>.pem`` in ``keys_dir``."""
    directory = base / section.keys_dir
    pems = sorted(directory.glob("*.pem")) if directory.is_dir() else []
    if not pems:
        raise ConfigError(
            f"webpush.keys_dir: no <app>.pem key in {str(directory)!r}; create "
            f"one with `sessionpush keys generate --app default --dir {directory}`"
        )
    return {
        pem.stem: VapidSigner(
            load_key_file(pem, "webpush.keys_dir"),
            section.subject,
            lifetime=section.token_lifetime,
            clock=clock.now,
        )
        for pem in pems
    }


def build_queue(config: DeliveryConfig, store: Store, clock: Clock) -> DeliveryQueue:
    """The transports the file configures, behind one delivery queue."""
    section = config.delivery
    transports: dict[str, Transport] = {}
    if config.webpush is not None:
        transports["webpush"] = WebPushTransport(
            webpush_signers(config.webpush, config.base, clock),
            timeout=section.timeout,
            allow_loopback=section.allow_loopback_endpoints,
        )
    if config.apns is not None:
        apns = config.apns
        token = ProviderToken(
            load_signing_key(config.base / apns.key_file, "apns.key_file"),
            apns.key_id,
            apns.team_id,
            refresh=apns.token_refresh,
        )
        transports["apns"] = ApnsTransport(token, apns.topics, timeout=section.timeout)
    if config.fcm is not None:
        client = httpx.AsyncClient(
            http2=True,
            timeout=section.timeout,
            follow_redirects=False,
            trust_env=False,
        )
        accounts = {
            app: AccessTokens(
                load_service_account(
                    config.base / file,
                    f"fcm.credentials.{app}",
                    allow_loopback=section.allow_loopback_endpoints,
                ),
                client,
                clock=clock.now,
            )
            for app, file in config.fcm.credentials.items()
        }
        transports["fcm"] = FcmTransport(accounts, client, clock=clock.now)
    if config.webhooks:
        transports["webhook"] = WebhookTransport(
            load_webhooks(config),
            httpx.AsyncClient(
                timeout=section.timeout, follow_redirects=False, trust_env=False
            ),
        )
    return DeliveryQueue(
        transports,
        store,
        clock,
        concurrency=section.concurrency,
        timeout=section.timeout,
        max_attempts=section.max_attempts,
        click_base=section.click_base,
    )
