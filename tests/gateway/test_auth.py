"""Connection auth attacked: expired, unsigned, wrong-algorithm and foreign
tokens, foreign origins, anonymous mode, and a token expiring mid-session."""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import jwt
import jwt.warnings
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sessionpush.gateway.apps import AppConfig
from sessionpush.gateway.auth import AuthError, sign_token, verify_token
from tests.gateway.secured import (
    NEWS_SECRET,
    SHOP_ORIGIN,
    SHOP_PUBLIC,
    SHOP_SECRET,
    closed_with,
    hello,
    receive,
    secured,
    send,
    token,
)

__all__ = ["secured"]  # the fixture, imported for these tests

SHOP = AppConfig(name="shop", signing_secret=SHOP_SECRET.encode())
NOW = 1_800_000_000.0
DAY = 86400.0


def verify(text: str, user: str = "alice") -> float:
    return verify_token(text, SHOP, user, NOW, DAY)


def hs512(payload: dict[str, Any]) -> str:
    """The app's own secret, but HMAC-SHA512: still not the pinned algorithm."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(payload, SHOP_SECRET, algorithm="HS512")


def claims(**extra: Any) -> dict[str, Any]:
    return {"app": "shop", "sub": "alice", "exp": NOW + 60, **extra}


def test_a_token_signed_with_the_apps_secret_opens_until_its_exp() -> None:
    assert verify(sign_token(SHOP_SECRET.encode(), "shop", "alice", 60, NOW)) == (
        NOW + 60
    )


@pytest.mark.parametrize(
    ("forged", "why"),
    [
        (sign_token(SHOP_SECRET.encode(), "shop", "alice", -1, NOW), "expired"),
        (jwt.encode(claims(), None, algorithm="none"), "HS256"),
        (jwt.encode(claims(), SHOP_SECRET + "x", algorithm="HS256"), "signed with"),
        (hs512(claims()), "HS256"),
        (jwt.encode(claims(app="news"), SHOP_SECRET, algorithm="HS256"), "app"),
        (jwt.encode(claims(sub="mallory"), SHOP_SECRET, algorithm="HS256"), "user"),
        (jwt.encode({"app": "shop", "sub": "alice"}, SHOP_SECRET), "'exp'"),
        (jwt.encode(claims(exp=NOW + 2 * DAY), SHOP_SECRET), "longer"),
        (jwt.encode(claims(exp="soon"), SHOP_SECRET), "exp"),
        (sign_token(NEWS_SECRET.encode(), "news", "alice", 60, NOW), "signed with"),
    ],
    ids=[
        "expired",
        "unsigned",
        "wrong-secret",
        "wrong-algorithm",
        "other-app-claim",
        "other-user",
        "no-exp",
        "too-long",
        "exp-not-a-number",
        "another-apps-token",
    ],
)
def test_a_forged_or_stale_token_is_refused_with_a_reason(
    forged: str, why: str
) -> None:
    with pytest.raises(AuthError, match=why) as caught:
        verify(forged)
    assert forged not in str(caught.value)


def test_an_rsa_signed_token_is_refused_by_the_pinned_algorithm() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(AuthError, match="HS256"):
        verify(jwt.encode(claims(), pem, algorithm="RS256"))


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=300)
    | st.from_regex(r"[A-Za-z0-9_-]{1,40}(\.[A-Za-z0-9_-]{0,60}){2}")
)
def test_any_string_as_a_token_is_refused_with_an_auth_error_only(text: str) -> None:
    with pytest.raises(AuthError):
        verify(text)


async def test_a_valid_token_in_hello_is_welcomed(secured: Any) -> None:
    gw = await secured()
    async with await gw.connect() as ws:
        await send(ws, hello())
        assert (await receive(ws))["type"] == "welcome"


@pytest.mark.parametrize(
    "frame",
    [
        hello(token=None),
        hello(token=sign_token(SHOP_SECRET.encode(), "shop", "alice", -5)),
        hello(token=jwt.encode(claims(exp=time.time() + 60), None, algorithm="none")),
        hello(token=token("news", "alice")),
        hello(app="news", token=token("shop", "alice")),
        hello(user="bob", token=token("shop", "alice")),
        hello(app="nope", token=token("shop", "alice")),
        hello(key="pk_wrong"),
    ],
    ids=[
        "no-token",
        "expired",
        "unsigned",
        "other-apps-token",
        "token-for-other-app",
        "other-user",
        "unknown-app",
        "wrong-public-key",
    ],
)
async def test_a_refused_hello_gets_an_error_and_close_4003_and_no_session(
    secured: Any, frame: dict[str, Any]
) -> None:
    gw = await secured()
    frame = {k: v for k, v in frame.items() if v is not None}
    async with await gw.connect() as ws:
        await send(ws, frame)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["code"] == "unauthorized"
        # Every error frame has the same fields (docs/protocol.md).
        assert error["seq"] is None
        assert await closed_with(ws) == 4003
    health = await gw.health()
    assert health["sessions"] == 0


async def test_a_foreign_origin_is_refused_at_the_handshake_with_403(
    secured: Any,
) -> None:
    gw = await secured()
    with pytest.raises(InvalidStatus) as caught:
        await gw.connect(origin="https://evil.example")
    assert caught.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        # An origin of another app is refused when the URL names the app.
        await connect(gw.url + "?app=shop", origin="https://news.example")
    assert (await gw.health())["connections"] == 0


async def test_another_apps_origin_cannot_say_hello_to_this_app(secured: Any) -> None:
    gw = await secured()
    async with await gw.connect(origin="https://news.example") as ws:
        await send(ws, hello())
        assert (await receive(ws))["code"] == "unauthorized"
        assert await closed_with(ws) == 4003


async def test_anonymous_mode_takes_the_public_key_from_an_allowed_origin(
    secured: Any,
) -> None:
    gw = await secured()
    async with await gw.connect(origin=SHOP_ORIGIN) as ws:
        await send(ws, hello(user="visitor-1", key=SHOP_PUBLIC))
        assert (await receive(ws))["type"] == "welcome"
    async with await gw.connect() as ws:
        # No Origin: not a web page, so the public key alone is not enough.
        await send(ws, hello(user="visitor-1", key=SHOP_PUBLIC))
        assert (await receive(ws))["code"] == "unauthorized"
        assert await closed_with(ws) == 4003


async def test_an_anonymous_id_never_names_a_known_user(secured: Any) -> None:
    gw = await secured()
    async with await gw.connect(origin=SHOP_ORIGIN) as ws:
        await send(ws, hello(user="alice", key=SHOP_PUBLIC))
        await receive(ws)
        await send(ws, {"type": "consent", "granted": False})
        await receive(ws)
    from sessionpush.store.sqlite import SQLiteStore

    store = SQLiteStore(str(gw.tmp / "state.db"))
    await store.open()
    try:
        assert (await store.get_user("shop", "alice")).consent is True
        assert (await store.get_user("shop", "anon:alice")).consent is False
    finally:
        await store.close()


async def test_an_expiring_token_is_refreshed_within_the_grace(secured: Any) -> None:
    gw = await secured("token_refresh_grace = 1.0")
    async with await gw.connect() as ws:
        await send(ws, hello(token=token(expires_in=0.4)))
        await receive(ws)
        expired = await receive(ws)
        assert expired["code"] == "token_expired"
        await send(ws, {"type": "refresh", "token": token()})
        assert await receive(ws) == {"type": "ack", "seq": None}
        await asyncio.sleep(1.2)
        await send(ws, {"type": "event", "name": "view", "seq": 1})
        frames = [await receive(ws), await receive(ws)]
        assert {"type": "ack", "seq": 1} in frames


async def test_a_token_not_refreshed_in_the_grace_closes_with_4004(
    secured: Any,
) -> None:
    gw = await secured("token_refresh_grace = 0.3")
    async with await gw.connect() as ws:
        await send(ws, hello(token=token(expires_in=0.3)))
        await receive(ws)
        assert (await receive(ws))["code"] == "token_expired"
        await send(ws, {"type": "refresh", "token": token("news")})
        assert (await receive(ws))["code"] == "unauthorized"
        assert await closed_with(ws) == 4004
