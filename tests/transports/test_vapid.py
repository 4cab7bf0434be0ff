"""VAPID tokens: claims, the per-origin cache and renewal before expiry."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sessionpush.errors import ConfigError
from sessionpush.transports.vapid import (
    VapidSigner,
    generate_key_file,
    load_key_file,
    public_key_b64,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def claims(header: str) -> dict[str, object]:
    token = header.split("t=")[1].split(",")[0]
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_one_token_is_reused_per_origin_and_a_new_origin_gets_its_own() -> None:
    clock = Clock()
    signer = VapidSigner(
        ec.generate_private_key(ec.SECP256R1()), "mailto:a@b.example", clock=clock
    )

    first = signer.header("https://push.example/a")
    again = signer.header("https://push.example/b")
    other = signer.header("https://updates.push.example/a")

    assert first == again
    assert claims(other)["aud"] == "https://updates.push.example"
    assert signer.signed == 2


def test_a_token_is_renewed_once_half_its_life_has_passed() -> None:
    clock = Clock()
    signer = VapidSigner(
        ec.generate_private_key(ec.SECP256R1()), "mailto:a@b.example", clock=clock
    )
    first = signer.header("https://push.example/a")

    clock.now += 6 * 3600 - 1
    assert signer.header("https://push.example/a") == first
    clock.now += 2
    renewed = signer.header("https://push.example/a")

    assert renewed != first
    assert claims(renewed)["exp"] == int(clock.now + 12 * 3600)


@pytest.mark.parametrize(
    "subject", ["ops@shop.example", "http://shop.example", "mailto:"]
)
def test_a_subject_that_is_not_mailto_or_https_refuses_to_start(subject: str) -> None:
    with pytest.raises(ConfigError, match=r"webpush\.subject"):
        VapidSigner(ec.generate_private_key(ec.SECP256R1()), subject)


def test_a_lifetime_over_12_hours_is_refused() -> None:
    with pytest.raises(ConfigError, match="token_lifetime"):
        VapidSigner(
            ec.generate_private_key(ec.SECP256R1()),
            "mailto:a@b.example",
            lifetime=86400,
        )


def test_a_generated_key_file_loads_back_with_the_same_public_key(
    tmp_path: Path,
) -> None:
    key = generate_key_file(tmp_path / "default.pem")

    loaded = load_key_file(tmp_path / "default.pem", "webpush.keys_dir")

    assert public_key_b64(loaded) == public_key_b64(key)
    assert (tmp_path / "default.pem").stat().st_mode & 0o777 == 0o600


def test_a_missing_key_file_names_the_setting_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"webpush\.keys_dir.*sessionpush keys generate"
    ):
        load_key_file(tmp_path / "nope.pem", "webpush.keys_dir")
