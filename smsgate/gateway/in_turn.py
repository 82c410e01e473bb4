"""Work one item after another per key, many keys at once: a phone's texts, a phone's replies."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable


class InTurn:
    """Work one item after another per key (a phone's texts, a phone's replies), many keys at once,
    at most `limit` items started and not finished in all."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tails: dict[str, asyncio.Task[None]] = {}

    async def start(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Start work() once the key's earlier work is done; waits while `limit` are under way."""
        await self._slots.acquire()
        task = asyncio.create_task(self._after(self._tails.get(key), work))
        self._tails[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]) -> None:
        if previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(previous)
        await work()

    def _done(self, key: str, task: asyncio.Task[None]) -> None:
        self._slots.release()
        if self._tails.get(key) is task:
            del self._tails[key]

    def cancel(self) -> None:
        for task in self._tails.values():
            task.cancel()
