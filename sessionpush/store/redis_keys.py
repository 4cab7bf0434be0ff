"""Where each piece of state lives in Redis, laid out for Redis Cluster.

A Lua script may only touch keys of one hash slot in a cluster, and Redis
hashes only the part of a key between the first ``{`` and the next ``}``
(the hash tag). So every key that one atomic step touches carries the same
tag:

- a user's profile, devices, subscriptions (enabled or not), ``unless``
  marks and idempotency keys: ``{u:APP<US>USER}``, one slot per user;
- cap counters: the first three parts of the cap key the engine builds
  (``APP<US>u<US>USER``, which every cap key starts with, per-session caps
  too), so that every cap of one user is in one slot and the caps of one
  send are taken atomically across devices;
- timers: one of ``shards`` timer queues ``{t:N}``, chosen by a hash of the
  user, so that a user's timers, their due index, their cancel index and
  their idempotency keys are in one slot while the queues spread over the
  cluster;
- a sent message: ``{m:ID}``, found by its id alone (a click names only
  the id);
- the decision, outcome and goal streams and the rule set: one key each.

``<US>`` is the unit separator ``\\x1f``, which the engine's own keys use.
"""

from __future__ import annotations

import zlib

__all__ = ["Keys", "TimerQueue", "hash_tag", "starting_with"]

_US = "\x1f"
# What SCAN MATCH reads as glob syntax (Redis util.c stringmatchlen).
_GLOB = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def starting_with(start: str) -> str:
    """A SCAN MATCH pattern for every key that starts with ``start``.

    App and user ids may hold ``*``, ``?`` or ``[``: escaped, they match
    only themselves, so erasing user ``a*`` never matches user ``ab``.
    """
    return _literal(start) + "*"


def _literal(text: str) -> str:
    return text.translate(_GLOB)


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that Redis Cluster hashes: keys with the same tag
    share a slot and may go into one script."""
    start = key.find(b"{")
    end = key.find(b"}", start + 1)
    if start < 0 or end <= start + 1:
        return key
    return key[start + 1 : end]


class Keys:
    """Key names under one ``prefix`` (several deployments may share a Redis)."""

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards
        self.decisions = f"{prefix}:decisions"
        self.outcomes = f"{prefix}:outcomes"
        self.goals = f"{prefix}:goals"
        self.rules = f"{prefix}:rules"
        self.rules_channel = f"{prefix}:rules:changed"

    # users

    def user(self, app: str, user: str, what: str) -> str:
        """``profile``, ``attrs``, ``devices``, ``subs``, ``suborder``,
        ``subseq``, ``suboff`` (disabled: reason by subscription) or
        ``supp``."""
        return f"{self.prefix}:{{u:{app}{_US}{user}}}:{what}"

    # delivery

    def send(self, key: str) -> str:
        """The hash behind one idempotency key.

        The engine's keys start with ``APP<US>USER<US>``
        (``transports.queue.idempotency_key``), so the key joins that user's
        slot; any other key gets a slot of its own.
        """
        parts = key.split(_US, 2)
        tag = f"u:{_US.join(parts[:2])}" if len(parts) == 3 else f"k:{key}"
        return f"{self.prefix}:{{{tag}}}:send:{key}"

    def other_sends(self) -> str:
        """A SCAN MATCH pattern for the idempotency keys in a slot of their
        own: keys not built by the engine, so not named after a user."""
        return f"{_literal(self.prefix)}:{{k:*}}:send:*"

    def message(self, message_id: str) -> str:
        """A sent message as JSON, read back when its link is clicked."""
        return f"{self.prefix}:{{m:{message_id}}}:msg"

    # caps

    def cap(self, key: str) -> str:
        parts = key.split(_US, 3)
        tag = _US.join(parts[:3]) if len(parts) >= 3 else key
        return f"{self.prefix}:{{c:{tag}}}:cap:{key}"

    # timers

    def shard_of(self, app: str, user: str) -> int:
        # crc32, not hash(): the shard must be the same in every process.
        return zlib.crc32(f"{app}{_US}{user}".encode()) % self.shards

    def timer_queue(self, shard: int) -> TimerQueue:
        return TimerQueue(f"{self.prefix}:{{t:{shard}}}")


class TimerQueue:
    """The keys of one timer shard; all of them hash to one slot."""

    __slots__ = ("base", "data", "due", "seq", "seqs", "tokens")

    def __init__(self, base: str) -> None:
        self.base = base
        self.due = f"{base}:due"  # zset: id -> due, or lease end once claimed
        self.data = f"{base}:data"  # hash: id -> the timer as JSON
        self.tokens = f"{base}:tokens"  # hash: id -> fencing token
        self.seqs = f"{base}:seqs"  # hash: id -> order added (ties by due)
        self.seq = f"{base}:seq"  # counter behind seqs

    def by_rule(self, app: str, user: str, rule: str) -> str:
        """Zset of a user's timers of one rule, scored by trigger time."""
        return f"{self.base}:rule:{app}{_US}{user}{_US}{rule}"

    def sent(self, timer_id: str) -> str:
        """The idempotency key set when the timer's one send is settled."""
        return f"{self.base}:sent:{timer_id}"
