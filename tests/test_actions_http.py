"""http_request against a local scripted HTTP server: headers, capture, error classes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from fakes.crm import Workspace
from fakes.http_server import Reply, http_server, refusing_port

from actions import ActionEnv, ActionError
from actions.http import HTTP_REQUEST, retry_after_seconds

WS = Workspace(id=uuid.uuid4(), owner=uuid.uuid4())


@pytest.fixture(scope="module")
def server():
    with http_server() as fake:
        yield fake


@pytest.fixture
def http(server):
    server.requests.clear()
    server.reply(Reply())
    return server


def step(**env):
    return WS.step(env=ActionEnv(**env))


def failure(params, **env) -> ActionError:
    with pytest.raises(ActionError) as caught:
        HTTP_REQUEST.run(params, step(**env))
    return caught.value


def test_http_request_sends_the_steps_idempotency_key(http):
    s = step()

    HTTP_REQUEST.run({"url": http.url("/hook"), "headers": {"Idempotency-Key": "mine"}}, s)

    [got] = http.requests
    assert got.headers["idempotency-key"] == s.idempotency_key


def test_http_request_sends_the_same_key_on_every_attempt(http):
    http.reply(Reply(503), Reply(200))
    s = step()

    with pytest.raises(ActionError):
        HTTP_REQUEST.run({"url": http.url()}, s)
    HTTP_REQUEST.run({"url": http.url()}, s)

    assert [r.headers["idempotency-key"] for r in http.requests] == [s.idempotency_key] * 2


def test_http_request_sends_method_query_and_json_body(http):
    params = {
        "method": "PUT",
        "url": http.url("/lead"),
        "query": {"source": "crm"},
        "json": {"email": "ann@example.com"},
    }

    HTTP_REQUEST.run(params, step())

    [got] = http.requests
    assert (got.method, got.path) == ("PUT", "/lead?source=crm")
    assert json.loads(got.body) == {"email": "ann@example.com"}
    assert got.headers["content-type"] == "application/json"


def test_http_request_captures_a_json_response(http):
    http.reply(Reply.json(201, {"id": 7, "ok": True}, **{"X-Request-Id": "r-1", "Set-Cookie": "a"}))

    out = HTTP_REQUEST.run({"url": http.url()}, step())

    assert out["status"] == 201
    assert out["body"] == {"id": 7, "ok": True}
    assert out["truncated"] is False
    assert out["headers"]["x-request-id"] == "r-1" and "set-cookie" not in out["headers"]


def test_http_request_keeps_a_text_response_as_text(http):
    http.reply(Reply(200, {"Content-Type": "text/plain; charset=utf-8"}, "héllo".encode()))

    assert HTTP_REQUEST.run({"url": http.url()}, step())["body"] == "héllo"


def test_http_request_truncates_a_large_body_and_says_so(http):
    http.reply(Reply.json(200, {"blob": "x" * 5000}))

    out = HTTP_REQUEST.run({"url": http.url(), "max_response_bytes": 100}, step())

    assert out["truncated"] is True
    assert isinstance(out["body"], str) and len(out["body"].encode()) == 100


@pytest.mark.parametrize("status", [400, 404])
def test_http_request_client_errors_are_not_retryable(http, status):
    http.reply(Reply.json(status, {"error": "bad"}))

    error = failure({"url": http.url()})

    assert (error.error_class, error.retryable) == ("http_4xx", False)
    assert error.details["status"] == status
    assert error.details["response"]["body"] == {"error": "bad"}


def test_http_request_408_is_retryable(http):
    http.reply(Reply(408))

    error = failure({"url": http.url()})

    assert (error.error_class, error.retryable) == ("http_4xx", True)


def test_http_request_503_is_a_retryable_server_error(http):
    http.reply(Reply(503))

    error = failure({"url": http.url()})

    assert (error.error_class, error.retryable) == ("http_5xx", True)


def test_http_request_429_carries_retry_after_seconds(http):
    http.reply(Reply(429, {"Retry-After": "2"}))

    error = failure({"url": http.url()})

    assert (error.error_class, error.retryable, error.retry_after) == ("http_429", True, 2.0)


def test_retry_after_as_an_http_date_is_the_seconds_until_then():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None


def test_http_request_to_a_refused_port_is_a_retryable_network_error():
    with refusing_port() as port:
        error = failure({"url": f"http://127.0.0.1:{port}/"})

    assert (error.error_class, error.retryable) == ("network", True)


def test_http_request_that_outlasts_its_timeout_is_a_retryable_timeout(http):
    http.reply(Reply(200, delay=5))

    error = failure({"url": http.url(), "timeout": {"seconds": 1}})

    assert (error.error_class, error.retryable) == ("timeout", True)


def test_http_request_to_a_non_http_url_is_a_validation_error():
    error = failure({"url": "file:///etc/passwd"})

    assert (error.error_class, error.retryable) == ("validation", False)


def test_http_request_with_a_line_break_in_a_header_is_a_validation_error(http):
    error = failure({"url": http.url(), "headers": {"X-Token": "a\r\nX-Evil: 1"}})

    assert (error.error_class, error.retryable) == ("validation", False)
    assert http.requests == []
