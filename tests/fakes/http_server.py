"""A scripted local HTTP server that records every request.

Tests queue replies (status, headers, body, delay) and read back what was received. The
last queued reply repeats once the queue is down to it, so "always 503" is one reply.
Standard library only (``ThreadingHTTPServer``): nothing to start but a thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Reply:
        return cls(
            status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode()
        )


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeHttp:
    host: str
    port: int
    replies: list[Reply] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        with self.lock:
            self.replies[:] = list(replies)

    def next_reply(self) -> Reply:
        with self.lock:
            if len(self.replies) > 1:
                return self.replies.pop(0)
            return self.replies[0] if self.replies else Reply()


def _handler(state: FakeHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append(
                Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
            )
            reply = state.next_reply()
            if reply.delay and state.stopping.wait(reply.delay):
                return
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def http_server() -> Iterator[FakeHttp]:
    """A running server on 127.0.0.1 and an ephemeral port, for the block."""
    state = FakeHttp("127.0.0.1", 0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="fake-http", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def refusing_port() -> Iterator[int]:
    """A local port that is bound but not listening: connecting to it is refused."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
