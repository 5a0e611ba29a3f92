"""The retry policy of a step, as a pure object that returns a decision (retry at T / give
up, and why); the executor only carries the decision out.

Where the policy comes from: the step's ``retry`` object (``max_attempts``, ``backoff``
constant | exponential, ``initial``, ``max``, ``jitter``, ``retry_on``), else the
automation's ``max_retries`` (attempts = max_retries + 1) with exponential back-off from
1 s to 5 min and full jitter.

Whether an error is worth retrying:

* with ``retry_on``: its class is in the list (``rate_limited`` also names ``http_429``);
* without: the error says so itself (``ActionError.retryable``: 5xx, 429, 408, 425,
  network and timeouts yes; other 4xx, validation and template errors no).

Validation, template, configuration and internal errors are never retried: the same input
gives the same answer. A ``Retry-After`` the other side sent is a floor on the wait (up
to :data:`MAX_RETRY_AFTER`; asking for longer gives up rather than parking a run for
days). Rejected: Dramatiq's ``Retries`` middleware, which re-runs the whole actor holding
the message, while a haste retry must resume one step of one execution from its row.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.definitions import parse_duration
from engine.steps import StepError

DEFAULT_INITIAL = 1.0
"""Seconds before the second attempt when the step sets no ``retry.initial``."""
DEFAULT_MAX_DELAY = 300.0
"""Cap on one wait when the step sets no ``retry.max``."""
DEFAULT_MAX_RETRIES = 3
"""The spec's ``automations.max_retries`` default."""
MAX_RETRY_AFTER = 86_400.0
"""Longest ``Retry-After`` honoured; a server asking for more makes the step give up."""
NEVER_RETRIED = frozenset({"validation", "config", "not_found", "internal", "cancelled"})
"""Classes no policy retries: the same input gives the same answer."""
ALIASES: Mapping[str, frozenset[str]] = {"rate_limited": frozenset({"http_429"})}
"""``retry_on`` names that also cover other classes."""


@dataclass(frozen=True)
class RetryDecision:
    """Retry after ``delay`` seconds, or give up; ``reason`` says why, for the step record."""

    retry: bool
    delay: float
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff: Literal["constant", "exponential"] = "exponential"
    initial: float = DEFAULT_INITIAL
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: bool = True
    retry_on: frozenset[str] | None = None

    @classmethod
    def for_step(cls, step: Mapping[str, Any], max_retries: int | None) -> RetryPolicy:
        """The policy of a step definition, with the automation's ``max_retries`` as default."""
        spec = step.get("retry")
        retries = DEFAULT_MAX_RETRIES if max_retries is None else max(0, int(max_retries))
        if not isinstance(spec, Mapping):
            return cls(max_attempts=retries + 1)
        retry_on = spec.get("retry_on")
        classes: frozenset[str] | None = None
        if isinstance(retry_on, list):
            classes = frozenset(str(c) for c in retry_on)
            for name, covered in ALIASES.items():
                if name in classes:
                    classes |= covered
        return cls(
            max_attempts=int(spec.get("max_attempts") or retries + 1),
            backoff="constant" if spec.get("backoff") == "constant" else "exponential",
            initial=_seconds(spec.get("initial"), DEFAULT_INITIAL),
            max_delay=_seconds(spec.get("max"), DEFAULT_MAX_DELAY),
            jitter=bool(spec.get("jitter", True)),
            retry_on=classes,
        )

    def retryable(self, error: StepError) -> bool:
        if error.error_class in NEVER_RETRIED:
            return False
        if self.retry_on is not None:
            return error.error_class in self.retry_on
        return error.retryable

    def wait(self, attempt: int, rng: random.Random) -> float:
        """Seconds before attempt ``attempt + 1``, before any ``Retry-After``."""
        base = self.initial
        if self.backoff == "exponential":
            base = self.initial * 2 ** min(max(attempt - 1, 0), 30)
        base = min(base, self.max_delay)
        return rng.uniform(0, base) if self.jitter else base

    def decide(
        self, error: StepError, attempt: int, rng: random.Random | None = None
    ) -> RetryDecision:
        """What to do after attempt number ``attempt`` (1-based) failed with ``error``."""
        if not self.retryable(error):
            why = "is never retried" if error.error_class in NEVER_RETRIED else "is not retryable"
            if self.retry_on is not None and error.error_class not in NEVER_RETRIED:
                why = f"is not in retry_on ({', '.join(sorted(self.retry_on))})"
            return RetryDecision(False, 0.0, f"{error.error_class} {why}")
        if attempt >= self.max_attempts:
            return RetryDecision(False, 0.0, f"gave up after {attempt} of {self.max_attempts}")
        after = error.retry_after
        if after is not None and after > MAX_RETRY_AFTER:
            return RetryDecision(
                False, 0.0, f"Retry-After of {after:.0f}s exceeds {MAX_RETRY_AFTER:.0f}s"
            )
        delay = self.wait(attempt, rng or random.Random())
        reason = f"attempt {attempt + 1} of {self.max_attempts} in {delay:.2f}s"
        if after is not None and after > delay:
            delay = after
            reason = f"attempt {attempt + 1} of {self.max_attempts} after Retry-After {after:g}s"
        return RetryDecision(True, delay, reason)


def _seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value).total_seconds()
    except ValueError:
        return default
