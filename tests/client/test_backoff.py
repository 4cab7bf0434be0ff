"""Reconnect delays and pacing, with the randomness pinned."""

from __future__ import annotations

from sessionpush.client import Backoff, Pacer


def test_delays_double_up_to_the_cap_and_jitter_within_the_upper_half() -> None:
    spans: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        spans.append((low, high))
        return low

    backoff = Backoff(base=0.5, cap=4.0, uniform=uniform)
    delays = [backoff.next_delay() for _ in range(6)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert spans[-1] == (2.0, 4.0)
    backoff.reset()
    assert backoff.next_delay() == 0.25


def test_the_pacer_allows_the_burst_then_the_rate() -> None:
    pacer = Pacer(rate=50.0, burst=200.0, tokens=200.0)
    assert pacer.allowance(100.0) == 200
    pacer.spend(200)
    assert pacer.allowance(100.0) == 0
    assert pacer.wait() == 0.02
    assert pacer.allowance(100.5) == 25
