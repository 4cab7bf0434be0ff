"""The delivery config file: what it builds, and what refuses the start."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sessionpush.engine.clock import VirtualClock
from sessionpush.errors import ConfigError
from sessionpush.store.sqlite import SQLiteStore
from sessionpush.transports.apns import ApnsTransport
from sessionpush.transports.config import build_queue, load_config
from sessionpush.transports.fcm import FcmTransport
from tests.transports.fcm_server import PROJECT, FcmService

APNS = """
[apns]
team_id = "TEAM123456"
key_id = "KEY1234567"
key_file = "AuthKey_KEY1234567.p8"
token_refresh = 2700

[apns.topics]
default = "com.shop.app"
"""


def write_p8(path: Path, key: object | None = None) -> None:
    private = key or ec.generate_private_key(ec.SECP256R1())
    assert isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "delivery.toml"
    path.write_text(text)
    return str(path)


async def test_an_apns_section_builds_an_apns_transport_with_its_topics(
    tmp_path: Path, store: SQLiteStore, clock: VirtualClock
) -> None:
    write_p8(tmp_path / "AuthKey_KEY1234567.p8")

    queue = build_queue(load_config(config_file(tmp_path, APNS)), store, clock)

    transport = queue.transports["apns"]
    assert isinstance(transport, ApnsTransport)
    assert transport.topics == {"default": "com.shop.app"}
    assert transport.token.refresh == 2700
    await transport.close()


def test_a_missing_apns_key_file_refuses_the_start_naming_the_key(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"apns\.key_file: cannot read"):
        load_config(config_file(tmp_path, APNS))


def test_an_rsa_key_as_apns_key_file_is_refused_as_not_p256(tmp_path: Path) -> None:
    write_p8(
        tmp_path / "AuthKey_KEY1234567.p8",
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )

    with pytest.raises(ConfigError, match=r"apns\.key_file: .* not a P-256 key"):
        load_config(config_file(tmp_path, APNS))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('team_id = "TEAM123456"', 'team_id = "team"', r"apns\.team_id"),
        ("token_refresh = 2700", "token_refresh = 600", r"apns\.token_refresh"),
        ("token_refresh = 2700", "token_refresh = 7200", r"apns\.token_refresh"),
        ('default = "com.shop.app"', 'default = "shop app"', r"apns\.topics\.default"),
        ("token_refresh = 2700", 'token_refresh = "45m"', r"\$\.apns\.token_refresh"),
        ("token_refresh = 2700", "refresh = 2700", r"`refresh` - at `\$\.apns`"),
    ],
)
def test_a_bad_apns_value_refuses_the_start_naming_the_key(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    write_p8(tmp_path / "AuthKey_KEY1234567.p8")

    with pytest.raises(ConfigError, match=key):
        load_config(config_file(tmp_path, APNS.replace(old, new)))


async def test_an_fcm_section_builds_an_fcm_transport_per_app_project(
    tmp_path: Path, store: SQLiteStore, clock: VirtualClock
) -> None:
    FcmService().key_file(tmp_path)
    text = (
        "[delivery]\nallow_loopback_endpoints = true\n\n"
        '[fcm.credentials]\ndefault = "service-account.json"\n'
    )

    queue = build_queue(load_config(config_file(tmp_path, text)), store, clock)

    transport = queue.transports["fcm"]
    assert isinstance(transport, FcmTransport)
    assert transport.tokens["default"].account.project_id == PROJECT
    await transport.close()


def test_a_missing_fcm_key_file_refuses_the_start_naming_the_app(
    tmp_path: Path,
) -> None:
    text = '[fcm.credentials]\nshop = "nope.json"\n'

    with pytest.raises(ConfigError, match=r"fcm\.credentials\.shop: cannot read"):
        load_config(config_file(tmp_path, text))
