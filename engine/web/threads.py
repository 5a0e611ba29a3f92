"""Blocking work (psycopg, the engine's functions) off the event loop, abandonable.

Handlers run database work in anyio's worker threads. Starlette's ``run_in_threadpool``
makes a cancelled request wait for its thread; at shutdown, past the graceful bound,
uvicorn cancels the requests still running, and a thread stuck on a lock would then hold
the whole process up. :func:`blocking` stops waiting instead (``abandon_on_cancel``), and
:func:`engine.web.server.serve` ends the process if such a thread is still alive after
the server has stopped: its connection closes with the process, so its transaction rolls
back, or it had committed and its answer was never sent (the sender's retry finds the
webhook receipt). Either way the request was never acknowledged as done when it was not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

T = TypeVar("T")


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread (context vars copied: log ids follow)."""
    return await anyio.to_thread.run_sync(
        functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
    )
