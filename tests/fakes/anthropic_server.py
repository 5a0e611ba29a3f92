"""A local server speaking Anthropic's Messages wire format, for the real ``anthropic`` SDK.

``POST /v1/messages`` answers with a ``tool_use`` block calling the one tool the request
forces (``tool_choice: {"type": "tool"}``), its ``input`` the scripted content or the
offline heuristics' valid answer. Errors use Anthropic's body (``{"type": "error",
"error": {"type", "message"}}``), e.g. 529 ``overloaded_error``, 429 ``rate_limit_error``
with ``retry-after``. Scripting and recording: :mod:`tests.fakes.openai_server`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.fakes.openai_server import AUTO, FakeLLM, Reply, _json_reply, auto_answer, serve, task_of
from workers.providers.offline import words

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

__all__ = ["AUTO", "anthropic_server"]


def anthropic_error(reply: Reply) -> tuple[int, dict[str, str], bytes]:
    kind = reply.content.get("type") or ERROR_TYPES.get(reply.status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": reply.content["message"]}}
    return _json_reply(reply.status, body, reply.headers)


def messages(fake: FakeLLM, body: Any, reply: Reply) -> tuple[int, dict[str, str], bytes]:
    system = body.get("system") or ""
    if isinstance(system, list):
        system = "".join(block.get("text", "") for block in system)
    prompt = "".join(
        m["content"] if isinstance(m.get("content"), str) else ""
        for m in body.get("messages") or []
    )
    tool = (body.get("tool_choice") or {}).get("name") or ""
    if reply.kind == "ok" and isinstance(reply.content, str):
        block: dict[str, Any] = {"type": "text", "text": reply.content}
        stop = "end_turn"
        answer_text = reply.content
    else:
        data = reply.content if reply.kind == "ok" else auto_answer(task_of(tool), system, prompt)
        block = {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:12]}",
            "name": tool,
            "input": data,
        }
        stop = "tool_use"
        answer_text = str(data)
    payload = {
        "id": f"msg_{uuid.uuid4().hex[:12]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(1, len(words(system + prompt))),
            "output_tokens": max(1, len(words(answer_text))),
        },
    }
    return _json_reply(200, payload, reply.headers)


@contextmanager
def anthropic_server() -> Iterator[FakeLLM]:
    """A running fake Anthropic on 127.0.0.1; point ``base_url`` at ``fake.base_url``."""
    with serve(FakeLLM("anthropic", {"/v1/messages": messages}), anthropic_error) as fake:
        yield fake
