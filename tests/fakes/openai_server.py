"""A local server speaking OpenAI's wire format, driven through the real ``openai`` SDK.

Endpoints: ``POST /v1/chat/completions`` (with ``response_format: json_schema``),
``POST /v1/responses`` (``text.format: json_schema``) and ``POST /v1/embeddings`` (float
or base64). Tests script replies in order (:meth:`FakeLLM.script`); once the script is
used up the server answers "auto": a valid answer computed by the offline heuristics for
the task type named in the request's schema (``<task_type>_result``), and hashed vectors
for embeddings, so semantic tests see sensible similarities.

A scripted reply is one of :func:`ok` (this content, valid envelope), :func:`error`
(status, OpenAI or Anthropic error body, headers such as ``Retry-After``), :func:`raw`
(any status and body: malformed JSON, HTML from a proxy) or :data:`AUTO`. Every request is
recorded with its arrival time, headers and JSON body.

The machinery (:class:`FakeLLM`) is shared with :mod:`tests.fakes.anthropic_server`.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workers.providers.base import StructuredRequest
from workers.providers.offline import OfflineProvider, hashed_embedding, words


@dataclass(frozen=True)
class Reply:
    kind: str  # ok | error | raw | auto
    status: int = 200
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


AUTO = Reply("auto")


def ok(content: Any, **headers: str) -> Reply:
    """A 200 whose answer is ``content`` (a dict becomes the JSON / tool input)."""
    return Reply("ok", 200, content, headers)


def error(status: int, message: str = "error", *, kind: str | None = None, **headers: str) -> Reply:
    """An error status with the provider's JSON error body; ``retry_after="2"`` etc."""
    fixed = {k.replace("_", "-"): v for k, v in headers.items()}
    return Reply("error", status, {"message": message, "type": kind}, fixed)


def raw(status: int, body: bytes, content_type: str = "application/json") -> Reply:
    """Any body, e.g. truncated JSON with a JSON content type."""
    return Reply("raw", status, None, {"Content-Type": content_type}, body)


def slow(seconds: float, reply: Reply = AUTO) -> Reply:
    """``reply`` after ``seconds`` (a timeout test)."""
    return Reply(reply.kind, reply.status, reply.content, reply.headers, reply.body, seconds)


@dataclass(frozen=True)
class Seen:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class FakeLLM:
    """Shared state of a fake provider: script, recorded requests, the endpoint handlers."""

    name: str
    handlers: dict[str, Callable[[FakeLLM, Any, Reply], tuple[int, dict[str, str], bytes]]]
    host: str = "127.0.0.1"
    port: int = 0
    replies: list[Reply] = field(default_factory=list)
    then: Reply = AUTO
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}" + ("/v1" if self.name == "openai" else "")

    def script(self, *replies: Reply, then: Reply = AUTO) -> None:
        """Answer with ``replies`` in order, then with ``then`` forever."""
        with self.lock:
            self.replies = list(replies)
            self.then = then

    def next_reply(self) -> Reply:
        with self.lock:
            return self.replies.pop(0) if self.replies else self.then

    def calls(self, suffix: str = "") -> list[Seen]:
        return [r for r in self.requests if r.path.endswith(suffix)]


def _json_reply(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(payload).encode(),
    )


def auto_answer(task_type: str, system: str, prompt: str) -> dict[str, Any]:
    """What the offline heuristics answer: valid for the task type's schema."""
    request = StructuredRequest(
        task_type, "fake", system, prompt, f"{task_type}_result", {}, 500, 5
    )
    return OfflineProvider().complete(request).data


def task_of(schema_name: str) -> str:
    return schema_name.removesuffix("_result")


# --- OpenAI endpoints ----------------------------------------------------------------------


def openai_error(reply: Reply) -> tuple[int, dict[str, str], bytes]:
    kind = reply.content.get("type") or (
        "rate_limit_exceeded" if reply.status == 429 else "server_error"
    )
    body = {
        "error": {"message": reply.content["message"], "type": kind, "param": None, "code": None}
    }
    return _json_reply(reply.status, body, reply.headers)


def _usage(prompt: str, answer: str) -> tuple[int, int]:
    return max(1, len(words(prompt))), max(1, len(words(answer)))


def chat_completions(fake: FakeLLM, body: Any, reply: Reply) -> tuple[int, dict[str, str], bytes]:
    messages = body.get("messages") or []
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    prompt = next((m["content"] for m in messages if m.get("role") == "user"), "")
    schema_name = (body.get("response_format") or {}).get("json_schema", {}).get("name", "")
    content = (
        reply.content if reply.kind == "ok" else auto_answer(task_of(schema_name), system, prompt)
    )
    text = content if isinstance(content, str) else json.dumps(content)
    prompt_tokens, completion_tokens = _usage(system + prompt, text)
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return _json_reply(200, payload, reply.headers)


def responses(fake: FakeLLM, body: Any, reply: Reply) -> tuple[int, dict[str, str], bytes]:
    system = body.get("instructions") or ""
    prompt = body.get("input") or ""
    schema_name = ((body.get("text") or {}).get("format") or {}).get("name", "")
    content = (
        reply.content if reply.kind == "ok" else auto_answer(task_of(schema_name), system, prompt)
    )
    text = content if isinstance(content, str) else json.dumps(content)
    input_tokens, output_tokens = _usage(system + prompt, text)
    payload = {
        "id": f"resp_{uuid.uuid4().hex[:12]}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model"),
        "output": [
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    return _json_reply(200, payload, reply.headers)


def embeddings(fake: FakeLLM, body: Any, reply: Reply) -> tuple[int, dict[str, str], bytes]:
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = reply.content if reply.kind == "ok" else hashed_embedding(str(text))
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        else:
            data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(max(1, len(words(str(t)))) for t in texts)
    payload = {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return _json_reply(200, payload, reply.headers)


OPENAI_HANDLERS = {
    "/v1/chat/completions": chat_completions,
    "/v1/responses": responses,
    "/v1/embeddings": embeddings,
}


# --- the server ----------------------------------------------------------------------------


def _handler(
    fake: FakeLLM, error_body: Callable[[Reply], tuple[int, dict[str, str], bytes]]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw_body or b"null")
            except ValueError:
                body = None
            fake.requests.append(
                Seen(
                    time.monotonic(),
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            reply = fake.next_reply()
            if reply.delay and fake.stopping.wait(reply.delay):
                return
            handler = fake.handlers.get(self.path.split("?")[0])
            if handler is None:
                status, headers, payload = error_body(Reply("error", 404, {"message": "no route"}))
            elif reply.kind == "error":
                status, headers, payload = error_body(reply)
            elif reply.kind == "raw":
                status, headers, payload = reply.status, dict(reply.headers), reply.body
            else:
                status, headers, payload = handler(fake, body or {}, reply)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(
    fake: FakeLLM, error_body: Callable[[Reply], tuple[int, dict[str, str], bytes]]
) -> Iterator[FakeLLM]:
    server = ThreadingHTTPServer((fake.host, 0), _handler(fake, error_body))
    server.daemon_threads = True
    server.block_on_close = False  # keep-alive connections of the SDKs must not hold us
    fake.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name=f"fake-{fake.name}", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def openai_server() -> Iterator[FakeLLM]:
    """A running fake OpenAI on 127.0.0.1; point ``base_url`` at ``fake.base_url``."""
    with serve(FakeLLM("openai", OPENAI_HANDLERS), openai_error) as fake:
        yield fake
