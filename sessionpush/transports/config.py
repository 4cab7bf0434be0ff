"""Provider credentials and delivery settings, from one TOML file.

``serve --delivery-config FILE`` (or ``SESSIONPUSH_DELIVERY_CONFIG``) names
the file; ``docs/delivery.md`` shows every key. The file is decoded
strictly: an unknown key, a wrong type or an unreadable credential refuses
the start with a :class:`~sessionpush.errors.ConfigError` naming the key.
Without a file, pushes go to the outbox only.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from sessionpush.engine.clock import Clock
from sessionpush.errors import ConfigError
from sessionpush.store.base import Store
from sessionpush.transports.base import Transport
from sessionpush.transports.queue import DeliveryQueue
from sessionpush.transports.vapid import VapidSigner, check_subject, load_key_file
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


class DeliveryConfig(msgspec.Struct, forbid_unknown_fields=True):
    delivery: DeliverySection = msgspec.field(default_factory=DeliverySection)
    webpush: WebPushSection | None = None

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
    return config


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
    return DeliveryQueue(
        transports,
        store,
        clock,
        concurrency=section.concurrency,
        timeout=section.timeout,
        max_attempts=section.max_attempts,
        click_base=section.click_base,
    )
