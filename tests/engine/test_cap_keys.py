"""Cap counter keys: whose sends they count, and where Redis keeps them."""

from __future__ import annotations

import re
from typing import Any

from sessionpush.engine.rules import CompiledLimit
from sessionpush.store.redis_keys import Keys


async def test_a_session_id_reused_by_another_user_starts_a_fresh_session_count(
    harness: Any,
) -> None:
    h = await harness('rule r { when cart limit 1 per session push { title "a" } }')
    ann = await h.open(user="ann", session="s1")
    await h.event(ann, "cart")
    await h.engine.end(ann)
    bob = await h.open(user="bob", session="s1")
    await h.event(bob, "cart")
    await h.event(bob, "cart")
    assert [(d.user, d.decision) for d in await h.decisions("r")] == [
        ("ann", "sent"),
        ("bob", "sent"),
        ("bob", "capped"),
    ]


def test_every_cap_of_one_user_lands_in_one_redis_cluster_slot() -> None:
    limits = [
        CompiledLimit(1, "session", None),
        CompiledLimit(2, "user", 3600.0),
        CompiledLimit(3, "user", 86400.0),
        CompiledLimit(1, "day", None),
    ]
    keys = Keys("sp", shards=8)
    names = [
        keys.cap(limit.key("shop", "ann", session, rule))
        for limit in limits
        for rule in ("cart_recovery", "welcome")
        for session in ("s8", "s9")
    ]
    # Redis Cluster hashes only the first {...} of a key (the hash tag).
    tags = {re.findall(r"\{([^}]*)\}", name)[0] for name in names}
    assert tags == {"c:shop\x1fu\x1fann"}


def test_the_caps_of_one_rule_never_share_a_counter() -> None:
    limits = [
        CompiledLimit(1, "session", None),
        CompiledLimit(2, "user", 3600.0),
        CompiledLimit(3, "user", 86400.0),
        CompiledLimit(1, "day", None),
    ]
    made = [limit.key("shop", "ann", "s9", "r") for limit in limits]
    assert len(set(made)) == len(made)
    other_session = CompiledLimit(1, "session", None).key("shop", "ann", "s8", "r")
    assert other_session not in made
