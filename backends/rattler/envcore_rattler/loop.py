"""The event loop rattler's coroutines run on: one per thread, kept for the thread's life. Its own module
so that installing loads neither the resolver nor the spec parser."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _ThreadLoop:
    """An event loop kept for the life of its thread (closed with it): ``asyncio.run`` makes a new loop per
    call, which costs as much as the solve of a small environment."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_closed():
            self.loop.close()


_thread_loops = threading.local()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on this thread's loop, also when the caller already runs an event loop
    (notebooks: then in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        holder: _ThreadLoop | None = getattr(_thread_loops, "holder", None)
        if holder is None or holder.pid != os.getpid():  # none yet, or inherited through fork
            holder = _thread_loops.holder = _ThreadLoop()
        task = holder.loop.create_task(coro)
        try:
            return holder.loop.run_until_complete(task)
        except BaseException:
            task.cancel()  # interrupted (Ctrl-C): not left running; the loop's next run completes the cancel
            raise
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
