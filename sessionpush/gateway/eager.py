"""Run a coroutine at once, and in a task only if it has to wait.

With the embedded SQLite store, a frame is handled without waiting on
anything (``Store.inline``), yet a task per frame costs a task object, a
loop callback and a round trip through the event loop, a large share of the
server's CPU with one event per frame (``benchmarks/README.md`` has the
figures). Python 3.12 has eager tasks for this
(``asyncio.eager_task_factory``); on 3.11 the same is done here: the
coroutine is started inline and, the first time it awaits a future that is
not done, handed to a task that goes on from there.

Unlike 3.12's eager tasks, the inline part runs outside any task
(``asyncio.current_task()`` is None), so code that needs a task, such as
``asyncio.timeout`` inside redis-py, must not run here: the gateway uses
this only with a store whose calls never wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["run_eagerly"]


def run_eagerly(
    coro: Coroutine[Any, Any, None],
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
) -> asyncio.Task[None] | None:
    """Run ``coro`` until it finishes or must wait.

    Returns None if it finished (its exception, if any, is raised here), or
    the task ``spawn`` made to run the rest of it.
    """
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return spawn(_resume(coro, waiting))


async def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    await _Resumed(coro, waiting)


class _Resumed:
    """Awaitable that gives the task what ``coro`` was waiting on, then
    drives ``coro`` on: the task sees the same futures it would have seen
    had it run ``coro`` from the start, cancellation included."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        coro = self._coro
        waiting = self._waiting
        while True:
            try:
                # A future (its blocking flag still set, so the task waits
                # on it) or None (a bare yield: the task runs on next turn).
                yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation, mostly
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(None)
                except StopIteration:
                    return
