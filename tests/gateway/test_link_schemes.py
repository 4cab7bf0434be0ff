"""App link schemes come from the app config: a rule set whose links use a
scheme its app does not declare refuses to start (``check`` cannot know the
config), and so does a rule set sent to ``PUT /v1/rules``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionpush.engine.policy import AppPolicy
from sessionpush.errors import ConfigError
from sessionpush.gateway.app import Settings, create_app
from sessionpush.gateway.apps import AppConfig, GatewayConfig, load_gateway_config

SECRET = "shop-signing-secret-0123456789abcdef"
OPERATOR = "operator-key-0123456789abcdef"

RULES = """rule cart_link {
    when cart
    push { title "Your cart" link "shop://cart" }
}

rule files_link {
    when view
    push {
        title "Your files"
        link  "ftp://files.example/{path}"
    }
}
"""


def start(tmp_path: Path, policy: str) -> None:
    (tmp_path / "shop.rules").write_text(RULES)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[apps.shop]\nsigning_secret = "{SECRET}"\nrules = ["shop.rules"]\n'
        f"[apps.shop.policy]\n{policy}\n"
    )
    create_app(Settings(config=str(config), store=str(tmp_path / "s.db")))


def test_an_undeclared_app_scheme_refuses_the_start_naming_where(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        start(tmp_path, 'link_schemes = ["shop"]')
    message = str(caught.value)
    assert f"{tmp_path / 'shop.rules'}:10:15: 'ftp:'" in message
    assert "shop:" not in message.split("declare:")[1].split("\n")[1]
    assert "link_schemes in [apps.shop.policy]" in message


def test_without_link_schemes_every_app_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        start(tmp_path, "")
    lines = str(caught.value).split("\n")
    assert lines[1:3] == [
        f"  {tmp_path / 'shop.rules'}:3:35: 'shop:'",
        f"  {tmp_path / 'shop.rules'}:10:15: 'ftp:'",
    ]


def test_declared_app_schemes_start(tmp_path: Path) -> None:
    start(tmp_path, 'link_schemes = ["shop", "FTP"]')


def test_development_mode_accepts_any_app_scheme(tmp_path: Path) -> None:
    (tmp_path / "shop.rules").write_text(RULES)
    create_app(Settings(rules=(str(tmp_path / "shop.rules"),)))


@pytest.mark.parametrize(
    ("scheme", "says"),
    [
        ("javascript", "never are"),
        ("http", "never are"),
        ("https", "always"),
        ("shop cart", "not a URL scheme"),
        ("", "link_schemes[0]"),
    ],
)
def test_a_bad_link_scheme_refuses_the_start_and_is_named(
    tmp_path: Path, scheme: str, says: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[apps.shop]\nsigning_secret = "{SECRET}"\n'
        f'[apps.shop.policy]\nlink_schemes = ["{scheme}"]\n'
    )
    with pytest.raises(ConfigError, match=r"policy\.link_schemes\[0\]") as caught:
        load_gateway_config(str(path))
    assert says in str(caught.value)


def test_schemes_are_read_in_lower_case_without_their_colon(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[apps.shop]\nsigning_secret = "{SECRET}"\n'
        '[apps.shop.policy]\nlink_schemes = ["Shop", "mailto:", "app://"]\n'
    )
    schemes = load_gateway_config(str(path)).policies["shop"].link_schemes
    assert schemes == frozenset({"shop", "mailto", "app"})


async def test_put_rules_refuses_a_scheme_an_app_of_the_shared_set_lacks(
    gateway: Callable[..., Any],
) -> None:
    app = AppConfig(
        name="shop",
        signing_secret=SECRET.encode(),
        policy=AppPolicy(link_schemes=frozenset({"shop"})),
    )
    config = GatewayConfig(apps={"shop": app})
    old = 'rule hi {\n    when open\n    push { title "hi" link "shop://x" }\n}\n'
    gw = await gateway(old, admin_key=OPERATOR, gateway=config)
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    async with httpx.AsyncClient(base_url=gw.http) as client:
        refused = await client.put("/v1/rules", content=RULES, headers=auth)
        health = (await client.get("/healthz")).json()
        taken = await client.put(
            "/v1/rules", content=RULES.split("\n\n")[0] + "\n", headers=auth
        )

    assert refused.status_code == 422
    assert "api.rules:10:15: 'ftp:'" in refused.text
    assert health["rules"] == 1
    assert taken.status_code == 200, taken.text
