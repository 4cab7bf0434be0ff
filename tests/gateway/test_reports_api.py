"""The operator's endpoints: reports, explain and metrics, behind the key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import receive, send

RULES = 'rule nudge { when cart goal purchase within 1h push { title "a" } }'
KEY = "k3y-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def cart_then_purchase(gw: Any, user: str) -> None:
    ws = await gw.connect()
    await send(ws, {"type": "hello", "user": user, "device": {"platform": "web"}})
    await receive(ws)
    for seq, name in enumerate(["cart", "purchase"], start=1):
        await send(ws, {"type": "event", "name": name, "seq": seq})
        assert (await receive(ws))["type"] == "ack"
    await ws.close()


@pytest.mark.parametrize(
    "path", ["/v1/reports", "/v1/users/ann/explain", "/metrics", "/v1/dashboard/stream"]
)
async def test_operator_endpoints_refuse_a_request_without_the_key(
    gateway: Any, path: str
) -> None:
    gw = await gateway(RULES, admin_key=KEY)
    async with httpx.AsyncClient(base_url=gw.http) as client:
        assert (await client.get(path)).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get(path, headers=wrong)).status_code == 401


async def test_without_a_configured_key_the_reports_are_disabled(gateway: Any) -> None:
    gw = await gateway(RULES)
    async with httpx.AsyncClient(base_url=gw.http) as client:
        response = await client.get("/v1/reports", headers=AUTH)
    assert response.status_code == 403


async def test_the_report_counts_a_send_and_its_conversion(gateway: Any) -> None:
    gw = await gateway(RULES, admin_key=KEY)
    await cart_then_purchase(gw, "ann")
    async with httpx.AsyncClient(base_url=gw.http) as client:
        report = (await client.get("/v1/reports", headers=AUTH)).json()
        narrowed = await client.get(
            "/v1/reports", params={"since": "2999-01-01T00:00:00Z"}, headers=AUTH
        )
        bad = await client.get("/v1/reports", params={"since": "soon"}, headers=AUTH)
    (rule,) = report["rules"]
    assert rule["rule"] == "nudge"
    assert rule["goal"] == "purchase within 1h"
    assert (rule["funnel"]["sent"], rule["funnel"]["converted"]) == (1, 1)
    assert narrowed.json()["rules"][0]["funnel"]["triggered"] == 0
    assert bad.status_code == 400


async def test_explain_returns_the_users_trail(gateway: Any) -> None:
    gw = await gateway(RULES, admin_key=KEY)
    await cart_then_purchase(gw, "ann")
    async with httpx.AsyncClient(base_url=gw.http) as client:
        body = (await client.get("/v1/users/ann/explain", headers=AUTH)).json()
        nobody = (await client.get("/v1/users/bob/explain", headers=AUTH)).json()
    (entry,) = body["decisions"]
    assert (entry["rule"], entry["decision"], entry["converted"]) == (
        "nudge",
        "sent",
        True,
    )
    assert entry["explanation"] == "sent (delivered by outbox)"
    assert nobody == {"user": "bob", "decisions": []}


async def test_metrics_count_events_decisions_and_sends(gateway: Any) -> None:
    gw = await gateway(RULES, admin_key=KEY)
    await cart_then_purchase(gw, "ann")
    await cart_then_purchase(gw, "bob")
    async with httpx.AsyncClient(base_url=gw.http) as client:
        response = await client.get("/metrics", headers=AUTH)
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("sessionpush_events_total", ())] == 4
    assert samples[("sessionpush_rule_fires_total", (("rule", "nudge"),))] == 2
    key = ("sessionpush_decisions_total", (("decision", "sent"), ("rule", "nudge")))
    assert samples[key] == 2
    assert samples[("sessionpush_sends_total", (("channel", "push"),))] == 2
    assert samples[("sessionpush_timers_pending", ())] == 0
    assert samples[("sessionpush_connections", ())] == 0
    count = ("sessionpush_send_delay_seconds_count", (("channel", "push"),))
    assert samples[count] == 2
