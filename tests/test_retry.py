"""The retry policy is a pure object: (error, attempt) -> retry after T, or give up, and why."""

from __future__ import annotations

import random

import pytest

from engine.steps import StepError
from workers.retry import MAX_RETRY_AFTER, RetryPolicy

NO_JITTER = {"jitter": False, "initial": {"seconds": 2}, "max": {"seconds": 10}}


def decide(policy: RetryPolicy, error: StepError, attempt: int = 1):
    return policy.decide(error, attempt, random.Random(7))


def test_default_policy_comes_from_the_automation_max_retries() -> None:
    policy = RetryPolicy.for_step({"id": "s"}, 2)

    assert policy.max_attempts == 3 and policy.backoff == "exponential" and policy.jitter
    assert RetryPolicy.for_step({"id": "s"}, None).max_attempts == 4  # the spec default, 3


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy.for_step({"retry": {"max_attempts": 10, **NO_JITTER}}, 3)
    error = StepError("http_5xx", "503", retryable=True)

    assert [decide(policy, error, n).delay for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_constant_backoff_and_full_jitter_stay_within_bounds() -> None:
    constant = RetryPolicy.for_step({"retry": {"backoff": "constant", **NO_JITTER}}, 3)
    jittered = RetryPolicy.for_step({"retry": {"initial": {"seconds": 4}}}, 3)
    error = StepError("network", "reset", retryable=True)

    assert decide(constant, error, 3).delay == 2
    delays = [jittered.decide(error, 1, random.Random(seed)).delay for seed in range(50)]
    assert all(0 <= d <= 4 for d in delays) and len(set(delays)) > 40


def test_gives_up_after_max_attempts_with_the_reason() -> None:
    policy = RetryPolicy.for_step({"retry": {"max_attempts": 2}}, 3)
    error = StepError("timeout", "slow", retryable=True)

    assert decide(policy, error, 1).retry
    last = decide(policy, error, 2)
    assert not last.retry and last.reason == "gave up after 2 of 2"


@pytest.mark.parametrize(
    ("error_class", "retryable", "expected"),
    [
        ("http_4xx", False, False),  # 400, 404...
        ("http_4xx", True, True),  # 408, 425 are raised as retryable
        ("http_429", True, True),
        ("http_5xx", True, True),
        ("network", True, True),
        ("validation", True, False),  # never, whatever the raiser says
        ("internal", False, False),
    ],
)
def test_without_retry_on_the_error_decides(error_class, retryable, expected) -> None:
    policy = RetryPolicy.for_step({}, 3)

    assert decide(policy, StepError(error_class, "x", retryable=retryable)).retry is expected


def test_retry_on_lists_the_classes_worth_retrying() -> None:
    policy = RetryPolicy.for_step({"retry": {"retry_on": ["network", "rate_limited"]}}, 3)

    assert decide(policy, StepError("http_429", "slow down", retryable=True)).retry
    refused = decide(policy, StepError("http_5xx", "503", retryable=True))
    assert not refused.retry and "not in retry_on" in refused.reason


def test_retry_after_is_a_floor_and_an_absurd_one_gives_up() -> None:
    policy = RetryPolicy.for_step({"retry": NO_JITTER}, 3)

    honoured = decide(policy, StepError("http_429", "x", retryable=True, retry_after=30))
    assert honoured.retry and honoured.delay == 30 and "Retry-After 30s" in honoured.reason
    shorter = decide(policy, StepError("http_429", "x", retryable=True, retry_after=0.5))
    assert shorter.delay == 2
    absurd = decide(policy, StepError("http_429", "x", True, retry_after=MAX_RETRY_AFTER + 1))
    assert not absurd.retry and "exceeds" in absurd.reason
