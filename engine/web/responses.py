"""JSON in and out of the web process: the encoder, the error shape, request bodies.

Every refusal is an :class:`ApiError`, answered as ``application/problem+json`` (RFC 9457)
with a stable machine-readable ``code`` and, for bad input, ``errors`` that each carry the
JSON pointer of the offending value, the same habit as ``haste validate``. Handlers raise;
:func:`problem_response` answers, so no handler builds an error body by hand.

Rows leave as they are: UUIDs and instants as text, Decimals as their exact text, and no
truncation (unlike :func:`engine.values.json_safe`, which cuts long values for traces:
an execution's step output read through the API must be the whole output).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from engine.definitions import MAX_NESTING, too_deep, unstorable_members


class ApiError(Exception):
    """A request refused with ``status``; ``code`` is stable, ``detail`` is for people."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors or [])
        self.headers = dict(headers or {})


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


class JSON(Response):
    """A JSON response whose encoder knows the types rows carry."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def problem_response(error: ApiError) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": error.code.replace("_", " "),
        "status": error.status,
        "code": error.code,
        "detail": error.detail,
    }
    if error.errors:
        body["errors"] = error.errors
    return Response(
        dumps(body),
        status_code=error.status,
        headers=error.headers,
        media_type="application/problem+json",
    )


def unstorable(value: Any) -> str | None:
    """Why a parsed JSON body cannot be kept as it is, or None: nested deeper than
    MAX_NESTING levels (the engine's recursive code, e.g. the outbox's JSON conversion,
    would overflow the stack on it), or holding what PostgreSQL's jsonb refuses
    (``\\u0000``, an unpaired surrogate, NaN or Infinity). Checked without recursion."""
    if too_deep(value) is not None:
        return f"the body is nested deeper than {MAX_NESTING} levels"
    for problem in unstorable_members(value):
        text = f"{problem.message} (at {problem.pointer or '/'} of the body)"
        # A pointer may hold the very surrogate it reports: show it escaped.
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return None


def parse_json(raw: bytes) -> Any:
    """Parse a request body; :class:`ApiError` 400 ``malformed`` when it is not JSON text
    PostgreSQL could store."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed", f"the body is not valid UTF-8 JSON: {exc}") from None
    if (reason := unstorable(value)) is not None:
        raise ApiError(400, "malformed", reason)
    return value


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters ignored."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def json_body(request: Request, *, max_bytes: int = 1_048_576) -> Any:
    """The request's JSON body (an empty body is ``{}``: every operation's body is optional
    or an object)."""
    raw = await request.body()
    if len(raw) > max_bytes:
        raise ApiError(413, "too_large", f"the body is larger than {max_bytes} bytes")
    if not raw.strip():
        return {}
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    return parse_json(raw)


def pointer(path: Sequence[Any]) -> str:
    """A JSON pointer (RFC 6901) for a path of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
