"""http_request: call an HTTP endpoint with the step's ``Idempotency-Key`` and keep the answer.

Every request carries ``Idempotency-Key: <the step's key>`` (it replaces one the author set,
so that retries of one step always present the same key), and a User-Agent naming haste.
Redirects are not followed: a 3xx is an answer like any other, returned as the output.

Output ``{"status", "headers", "body", "truncated"}``: ``headers`` is the subset in
:data:`KEPT_HEADERS` (what automations branch on, not cookies or tracing noise); ``body`` is
parsed when the response says it is JSON and arrived whole, else it is text (decoded with the
response's charset, undecodable bytes replaced). At most ``max_response_bytes`` are read; the
rest is never downloaded and ``truncated`` is true.

Errors (all carry ``details.status`` and the captured response when there was one):
4xx -> ``http_4xx``, not retryable except 408 and 425; 429 -> ``http_429``, retryable, with
``retry_after`` from ``Retry-After`` (seconds or HTTP-date); 5xx -> ``http_5xx``, retryable,
also with ``retry_after`` when given; connection failures -> ``network``; any timeout
(connect, read, write, or the attempt's total ``timeout``) -> ``timeout``; a request that
cannot be sent as written (not an http(s) URL, a header value with a line break) ->
``validation``.

Not done: blocking private/loopback destinations (SSRF). The tests need 127.0.0.1, and a
resolver-level check belongs with the deployment's egress policy; see the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from actions.base import ActionError, ExternalAction, Output, Params, StepContext
from engine.definitions import parse_duration

__all__ = ["HTTP_REQUEST", "classify_status", "retry_after_seconds"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
KEPT_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "retry-after",
    "etag",
    "last-modified",
    "x-request-id",
    "request-id",
    "idempotency-key",
    "idempotent-replayed",
)
#: Header values dry-run shows as "***": the author knows them, step records need not.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
RETRYABLE_4XX = frozenset({408, 425})


# --- pure parts --------------------------------------------------------------------------


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify_status(status: int) -> tuple[str, bool] | None:
    """``(error class, retryable)`` of a status, or None when it is a success."""
    if status == 429:
        return "http_429", True
    if 400 <= status < 500:
        return "http_4xx", status in RETRYABLE_4XX
    if status >= 500:
        return "http_5xx", True
    return None


def request_of(params: Params, step: StepContext) -> dict[str, Any]:
    """Method, URL, headers, query, body and limits of the request a step sends."""
    url = params.get("url")
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        raise ActionError(
            "validation",
            f"url: {url!r} is not an http(s) URL",
            details={"field": "url", "value": url},
        )
    headers = {
        name: value
        for name, value in (params.get("headers") or {}).items()
        if name.lower() != IDEMPOTENCY_HEADER.lower()
    }
    headers.setdefault("User-Agent", step.env.http_user_agent)
    headers[IDEMPOTENCY_HEADER] = step.idempotency_key
    timeout = step.env.http_timeout
    if params.get("timeout"):
        try:
            timeout = parse_duration(params["timeout"]).total_seconds()
        except ValueError as exc:
            raise ActionError(
                "validation", f"timeout: {exc}", details={"field": "timeout"}
            ) from exc
    max_bytes = params.get("max_response_bytes", step.env.http_max_response_bytes)
    request: dict[str, Any] = {
        "method": params.get("method", "POST"),
        "url": url,
        "headers": headers,
        "query": dict(params.get("query") or {}),
        "timeout": timeout,
        "max_response_bytes": int(max_bytes),
    }
    if "json" in params:
        request["json"] = params["json"]
    elif params.get("body") is not None:
        request["body"] = params["body"]
    return request


def capture(
    status: int, headers: Mapping[str, str], raw: bytes, truncated: bool, charset: str | None
) -> dict[str, Any]:
    """What the step keeps of a response."""
    content_type = headers.get("content-type", "")
    mime = content_type.split(";")[0].strip().lower()
    is_json = mime == "application/json" or mime.endswith("+json")
    text = raw.decode(charset or "utf-8", errors="replace")
    body: Any = text
    if is_json and not truncated and raw:
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    return {
        "status": status,
        "headers": {name: headers[name] for name in KEPT_HEADERS if name in headers},
        "body": body,
        "truncated": truncated,
    }


# --- I/O edge ----------------------------------------------------------------------------


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the attempt's total timeout passed while reading the body")
        if size + len(chunk) > max_bytes:
            chunks.append(chunk[: max_bytes - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _send(request: Mapping[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + request["timeout"]
    with httpx.Client(timeout=request["timeout"], follow_redirects=False) as client:
        kwargs: dict[str, Any] = {"headers": request["headers"], "params": request["query"]}
        if "json" in request:
            kwargs["json"] = request["json"]
        elif "body" in request:
            kwargs["content"] = request["body"]
        with client.stream(request["method"], request["url"], **kwargs) as response:
            raw, truncated = _read_capped(response, request["max_response_bytes"], deadline)
            return capture(
                response.status_code, response.headers, raw, truncated, response.charset_encoding
            )


def run(params: Params, step: StepContext) -> Output:
    request = request_of(params, step)
    where = f"{request['method']} {request['url']}"
    try:
        result = _send(request)
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        # What we were asked to send cannot be sent (bad URL, header with a newline):
        # the author's problem, and the same on every attempt.
        raise ActionError("validation", f"{where}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise ActionError(
            "timeout", f"{where}: timed out after {request['timeout']}s ({exc.__class__.__name__})"
        ) from exc
    except httpx.TransportError as exc:
        raise ActionError("network", f"{where}: {exc.__class__.__name__}: {exc}") from exc
    failure = classify_status(result["status"])
    if failure is None:
        return result
    error_class, retryable = failure
    raise ActionError(
        error_class,
        f"{where} answered HTTP {result['status']}",
        retryable=retryable,
        retry_after=retry_after_seconds(result["headers"].get("retry-after"), datetime.now(UTC)),
        details={"status": result["status"], "response": result},
    )


def describe(params: Params, step: StepContext) -> Output:
    request = request_of(params, step)
    shown = {
        name: "***" if name.lower() in SECRET_HEADERS else value
        for name, value in request["headers"].items()
    }
    return {
        "would": f"{request['method']} {request['url']}",
        "request": {**request, "headers": shown},
    }


HTTP_REQUEST = ExternalAction("http_request", run, describe)
