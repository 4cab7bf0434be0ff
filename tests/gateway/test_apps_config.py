"""The app config is strict: every bad key refuses the start and is named,
no secret is repeated; development mode stays on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionpush.cli import main
from sessionpush.engine.rules import QuietWindow
from sessionpush.errors import ConfigError
from sessionpush.gateway.apps import (
    check_dev_mode_host,
    is_loopback_origin,
    load_gateway_config,
)
from tests.gateway.secured import SHOP_SECRET, config_text

GOOD = 'signing_secret = "' + SHOP_SECRET + '"'


def load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    load_gateway_config(str(path))


def test_a_full_config_loads_with_its_apps_limits_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config_text("frames_per_second = 7"))
    config = load_gateway_config(str(path))
    assert sorted(config.apps) == ["news", "shop"]
    assert config.limits.frames_per_second == 7
    assert config.limits.frame_bytes == 65536
    assert config.apps["shop"].rules == (str(tmp_path / "shop.rules"),)
    assert config.dev_mode is False


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (f"[apps.shop]\n{GOOD}\ncolour = 1", "colour"),
        (f"[apps.shop]\n{GOOD}\n[limits]\nframes = 3", "frames"),
        (f"[apps.shop]\n{GOOD}\n[limits]\nframe_bytes = 10", "frame_bytes"),
        (f"[apps.shop]\n{GOOD}\nadmin_keys = 'one'", "admin_keys"),
        ("[apps.shop]\nsigning_secret = 'short'", "signing_secret"),
        (f"[apps.shop]\n{GOOD}\nadmin_keys = ['short']", "admin_keys[0]"),
        (
            f"[apps.shop]\n{GOOD}\nallowed_origins = ['shop.example/x']",
            "allowed_origins",
        ),
        (f"[apps.shop]\n{GOOD}\npublic_key = 'pk'", "public_key"),
        (f"[apps.a]\n{GOOD}\n[apps.b]\n{GOOD}", "apps.b.signing_secret"),
        (f"[apps.'a b']\n{GOOD}", "apps.a b"),
        ("[server]\ntrusted_proxies = []", "apps"),
        ("[apps]", "[apps.NAME]"),
        (f"[apps.shop]\n{GOOD}\n[server]\ntrusted_proxies = ['x']", "trusted_proxies"),
        ("[apps.shop\n", "TOML"),
    ],
)
def test_a_bad_key_refuses_the_start_and_is_named_without_its_value(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")) as caught:
        load(tmp_path, text)
    assert SHOP_SECRET not in str(caught.value)


def test_a_missing_config_file_is_named() -> None:
    with pytest.raises(ConfigError, match=re.escape("cannot read 'nope.toml'")):
        load_gateway_config("nope.toml")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "shop.example"])
def test_development_mode_refuses_a_host_beyond_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match=f"--host {host}"):
        check_dev_mode_host(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_development_mode_serves_loopback(host: str) -> None:
    check_dev_mode_host(host)


def test_serve_without_config_on_a_public_host_exits_naming_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 1
    assert "--host 0.0.0.0" in capsys.readouterr().err


@given(st.text(max_size=80))
def test_only_http_origins_of_loopback_hosts_count_as_loopback(text: str) -> None:
    if is_loopback_origin(text):
        scheme, _, rest = text.partition("://")
        assert scheme in ("http", "https")
        assert rest.startswith(("localhost", "127.", "[::1]", "[0:0:0:0:0:0:0:1]"))


@pytest.mark.parametrize(
    ("origin", "loopback"),
    [
        ("http://localhost:3000", True),
        ("http://127.0.0.1:8000", True),
        ("http://[::1]:8000", True),
        ("https://localhost.evil.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("file://localhost", False),
        ("null", False),
    ],
)
def test_dev_mode_admits_loopback_pages_only(origin: str, loopback: bool) -> None:
    assert is_loopback_origin(origin) is loopback


def test_global_caps_of_an_app_are_read_from_its_policy(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f"[apps.shop]\n{GOOD}\n[apps.shop.policy]\n"
        'caps = [{count = 3, per = "24h"}, {count = 1, per = "day"},'
        ' {count = 2, per = "session"}]\n'
    )
    config = load_gateway_config(str(path))
    caps = config.policies["shop"].caps
    assert [cap.describe("global cap") for cap in caps] == [
        "global cap 3 per user per 24h",
        "global cap 1 per user per day",
        "global cap 2 per session",
    ]


def test_an_app_without_a_policy_has_no_global_caps(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[apps.shop]\n{GOOD}\n")
    assert load_gateway_config(str(path)).policies["shop"].caps == ()


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ("caps = [{count = 3, per = '24h', every = 1}]", "every"),
        ("caps = [{count = 0, per = '24h'}]", "caps[0].count"),
        ("caps = [{per = '24h'}]", "count"),
        ("caps = [{count = 1, per = 'weekly'}]", "apps.shop.policy.caps[0].per"),
        ("caps = [{count = 1, per = '0h'}]", "apps.shop.policy.caps[0].per"),
        ("cap = []", "cap"),
    ],
)
def test_a_bad_policy_key_refuses_the_start_and_is_named(
    tmp_path: Path, policy: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load(tmp_path, f"[apps.shop]\n{GOOD}\n[apps.shop.policy]\n{policy}\n")


def test_default_quiet_hours_of_an_app_are_read_from_its_policy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f"[apps.shop]\n{GOOD}\n[apps.shop.policy]\nquiet_hours = '22:30-07:15'\n"
        f"[apps.news]\nsigning_secret = '{'n' * 32}'\n"
        "[apps.news.policy]\nquiet_hours = '21:00-09:00 drop'\n"
    )
    config = load_gateway_config(str(path))
    assert config.policies["shop"].quiet == QuietWindow(22 * 60 + 30, 7 * 60 + 15)
    assert config.policies["news"].quiet == QuietWindow(21 * 60, 9 * 60, drop=True)


@pytest.mark.parametrize(
    "window", ["22-08", "22:00-24:00", "22:00-08:00 later", "08:00-08:00", "9:00-10:00"]
)
def test_a_bad_default_quiet_window_refuses_the_start_and_is_named(
    tmp_path: Path, window: str
) -> None:
    text = f"[apps.shop]\n{GOOD}\n[apps.shop.policy]\nquiet_hours = '{window}'\n"
    with pytest.raises(ConfigError, match=r"apps\.shop\.policy\.quiet_hours"):
        load(tmp_path, text)
