"""The websocket protocol over real sockets: hello, events, errors that
keep the connection, in-app messages, resume."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway.conftest import receive, send

PRICEY = """
rule pricey {
    when view where price > 500
    limit 1 per session
    inapp { title "Need help with the {brand | default: 'item'}?" link "/help" }
}
"""

HELLO = {"type": "hello", "user": "u1", "device": {"platform": "web"}}


async def test_hello_is_welcomed_and_each_event_acknowledged(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        welcome = await receive(ws)
        assert welcome["type"] == "welcome"
        assert welcome["resumed"] is False
        assert len(welcome["session"]) == 32
        await send(
            ws, {"type": "event", "name": "view", "props": {"price": 10}, "seq": 1}
        )
        assert await receive(ws) == {"type": "ack", "seq": 1}


async def test_a_rule_answers_with_an_inapp_message_on_the_socket(
    gateway: Any,
) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        event = {"price": 900, "brand": "acme"}
        await send(ws, {"type": "event", "name": "view", "props": event, "seq": 7})
        message = await receive(ws)
        assert message["type"] == "message"
        assert message["rule"] == "pricey"
        assert message["title"] == "Need help with the acme?"
        assert message["link"] == "/help"
        assert await receive(ws) == {"type": "ack", "seq": 7}


async def test_the_welcome_comes_before_a_session_start_message(
    gateway: Any,
) -> None:
    gw = await gateway('rule hi { when session starts inapp { title "Hi" } }')
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        first, second = await receive(ws), await receive(ws)
        assert (first["type"], second["type"]) == ("welcome", "message")
        assert second["title"] == "Hi"


async def test_malformed_json_gets_an_error_and_the_connection_lives(
    gateway: Any,
) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        await send(ws, '{"type": "event", "name": ')
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["code"] == "malformed_json"
        await send(ws, {"type": "event", "name": "view", "seq": 2})
        assert await receive(ws) == {"type": "ack", "seq": 2}


async def test_a_wrong_field_type_is_named_by_its_path(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        await send(ws, {"type": "event", "name": 42})
        error = await receive(ws)
        assert error["code"] == "invalid_frame"
        assert "$.name" in error["message"]
        await send(ws, {"type": "event", "name": "view", "extra": 1})
        error = await receive(ws)
        assert error["code"] == "invalid_frame"
        assert "extra" in error["message"]
        await send(ws, {"type": "teleport"})
        assert (await receive(ws))["code"] == "invalid_frame"
        await send(ws, {"type": "event", "name": "view", "seq": 3})
        assert await receive(ws) == {"type": "ack", "seq": 3}


async def test_an_event_before_hello_is_refused_without_closing(
    gateway: Any,
) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, {"type": "event", "name": "view", "seq": 1})
        error = await receive(ws)
        assert error == {
            "type": "error",
            "code": "no_session",
            "message": "send hello before events",
            "seq": 1,
        }
        await send(ws, HELLO)
        assert (await receive(ws))["type"] == "welcome"


async def test_an_unknown_time_zone_is_refused(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, {**HELLO, "device": {"timezone": "Mars/Olympus"}})
        error = await receive(ws)
        assert error["code"] == "invalid_frame"
        assert "Mars/Olympus" in error["message"]


async def test_a_bare_utc_offset_is_refused_with_how_to_send_a_zone(
    gateway: Any,
) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, {**HELLO, "device": {"timezone": "+02:00"}})
        error = await receive(ws)
        assert error["code"] == "invalid_frame"
        assert error["message"].startswith(
            "time zone '+02:00' is an offset, not a zone: "
        )
        assert "like Europe/Berlin" in error["message"]
        assert error["message"].endswith("at `$.device.timezone`")


async def test_a_second_hello_on_one_connection_is_refused(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        await send(ws, HELLO)
        assert (await receive(ws))["code"] == "duplicate_hello"


async def test_reconnecting_inside_the_grace_period_resumes(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        session = (await receive(ws))["session"]
    async with await gw.connect() as ws:
        await send(ws, {**HELLO, "session": session})
        welcome = await receive(ws)
        assert welcome["session"] == session
        assert welcome["resumed"] is True


async def test_another_user_cannot_take_over_a_session(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        session = (await receive(ws))["session"]
        async with await gw.connect() as intruder:
            await send(intruder, {**HELLO, "user": "u2", "session": session})
            welcome = await receive(intruder)
            assert welcome["resumed"] is False
            assert welcome["session"] != session


async def test_healthz_reports_the_rule_set(gateway: Any) -> None:
    gw = await gateway(PRICEY)
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gw.http}/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["rules"] == 1
    assert len(body["rules_version"]) == 12


async def test_an_explicit_end_closes_the_socket_after_the_session_ends(
    gateway: Any,
) -> None:
    gw = await gateway('rule bye { when session ends push { title "Bye" } }')
    async with await gw.connect() as ws:
        await send(ws, HELLO)
        await receive(ws)
        await send(ws, {"type": "end"})
        await ws.wait_closed()
        assert ws.close_code == 1000
    assert [p["title"] for p in gw.pushes()] == ["Bye"]
