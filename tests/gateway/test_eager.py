"""run_eagerly: inline while nothing waits, a task from the first wait on,
with results, errors and cancellation where a task would put them."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from sessionpush.gateway.eager import run_eagerly


def _spawner(made: list[asyncio.Task[None]]) -> Any:
    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        made.append(task)
        return task

    return spawn


async def test_a_coroutine_that_never_waits_runs_inline_without_a_task() -> None:
    seen: list[str] = []

    async def inner() -> None:
        seen.append("a")

    async def outer() -> None:
        await inner()
        seen.append("b")

    made: list[asyncio.Task[None]] = []
    assert run_eagerly(outer(), _spawner(made)) is None
    # Done before run_eagerly returned: no turn of the loop was needed.
    assert seen == ["a", "b"]
    assert made == []


async def test_the_rest_runs_in_a_task_from_the_first_wait() -> None:
    seen: list[Any] = []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        seen.append("before")
        seen.append(await gate)
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.01)  # a timer
        seen.append("after")

    made: list[asyncio.Task[None]] = []
    task = run_eagerly(body(), _spawner(made))
    assert task is not None and made == [task]
    assert seen == ["before"]
    gate.set_result(42)
    await task
    assert seen == ["before", 42, "after"]


async def test_an_error_before_any_wait_is_raised_by_the_call() -> None:
    async def body() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        run_eagerly(body(), _spawner([]))


async def test_an_error_after_a_wait_ends_the_task_with_it() -> None:
    async def body() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    task = run_eagerly(body(), _spawner([]))
    assert task is not None
    with pytest.raises(ValueError, match="later"):
        await task


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    events: list[str] = []
    forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        try:
            await forever
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("cleaned up")

    task = run_eagerly(body(), _spawner([]))
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["cancelled", "cleaned up"]
    assert forever.cancelled()


async def test_a_coroutine_may_catch_the_cancellation_and_finish() -> None:
    async def body() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # still allowed to wait once more

    task = run_eagerly(body(), _spawner([]))
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    await task
    assert task.done() and not task.cancelled()
