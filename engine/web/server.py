"""Running the app under uvicorn, with a graceful stop bounded by HASTE_SHUTDOWN_TIMEOUT.

On SIGTERM (or SIGINT) uvicorn stops accepting connections at once, lets the requests in
flight finish for up to ``HASTE_SHUTDOWN_TIMEOUT`` seconds, then runs the lifespan's
shutdown (pool closed). A webhook in flight therefore either completes (committed and
answered) or, past the bound, is cut off before its answer: the sender retries with the
same webhook-id and the receipt answers it (see engine/web/webhooks.py), so the cut
loses nothing and doubles nothing.

uvicorn's own loggers go through the root handler that :func:`engine.logs.configure_logging`
installed (``log_config=None``); its access log is off because
:class:`engine.web.app.RequestContext` writes a structured one with ids and no tokens.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

from engine.logs import get_logger

log = get_logger("haste.web.server")


def make_server(
    app: Starlette, *, host: str, port: int, shutdown_timeout: float, log_level: str = "info"
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(shutdown_timeout)),
        server_header=False,
        date_header=True,
    )
    return uvicorn.Server(config)


def serve(
    app: Starlette,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    log_level: str = "info",
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then exit normally.

    uvicorn installs its own handlers while it runs and, when it is done, re-raises the
    signal it caught against the handlers that were there before. With the default ones
    that kills the process with the signal after a clean stop (exit status -15), which a
    supervisor cannot tell from a crash; no-op handlers installed first make a finished
    graceful stop exit 0, like the other haste processes.
    """
    server = make_server(
        app, host=host, port=port, shutdown_timeout=shutdown_timeout, log_level=log_level
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock] if sock is not None else None)
    _exit_if_stuck()


#: Seconds the worker threads get, once the server has stopped, to notice and end.
THREAD_GRACE = 1.0


def _exit_if_stuck() -> None:
    """End the process if a worker thread is still blocked after the graceful bound.

    Its request was cancelled without an answer; waiting for it (interpreter exit joins
    non-daemon threads) would make the bound meaningless. See engine/web/threads.py.
    """
    deadline = time.monotonic() + THREAD_GRACE
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if stuck:
        log.warning("exiting with blocked work abandoned", threads=stuck)
        logging.shutdown()
        os._exit(0)
