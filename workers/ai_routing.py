"""Who answers a task and at what price: model choice, failover, retry policy, rate limits.

**Model choice**, first match wins:

1. the step's ``provider`` / ``model`` (``ai_task`` params; stored on the task row);
2. the workspace's ``ai_models``: an active row whose ``config.task_types`` lists the task
   type, else an active row of the coarser ``type`` (:data:`workers.ai_types.MODEL_TYPE`),
   newest first. ``model_id`` is the model; ``config.fallback_model`` names the model to
   use on the other provider after a failover;
3. the process defaults: ``HASTE_AI_PROVIDER`` (``auto``: OpenAI if its key is set, else
   Anthropic, else offline) with ``HASTE_OPENAI_MODEL`` / ``HASTE_ANTHROPIC_MODEL``.

A provider that is chosen but has no key is a configuration error on the task. It never
silently becomes ``offline``: the offline stand-in answers only when asked for by name, or
under ``auto`` when *no* real key is set (:class:`ConfigError`).

**Failover**: with ``HASTE_AI_FAILOVER`` on and the other real provider configured, an
outage-class error (5xx, 529, network, timeout) moves the next attempt to it. 429 does not
(the provider is up and said when to come back), nor does an invalid answer.

**Retry policy** (:class:`AiRetryPolicy`) is a pure object returning a decision, kept out
of the loop: exponential back-off with full jitter (1 s doubling, capped at 30 s), a
``Retry-After`` the provider sent as the wait (a floor), at most ``HASTE_AI_MAX_ATTEMPTS``
calls per task. Client errors (4xx other than 408/409/429) and auth errors are final.

**Rate limits** (:class:`RateLimits`): one Dramatiq ``WindowRateLimiter`` per provider on
the broker's Redis (a 60 s sliding window of ``HASTE_AI_RATE_LIMITS`` requests), so every
worker process on every host shares the budget. A denied slot waits (jittered 50-250 ms)
until the window frees or the task's inline-wait allowance runs out; only then is it an
error (``rate_limited``, local). Rejected: Dramatiq's ``ConcurrentRateLimiter`` (bounds
calls in flight, not calls per minute, which is what providers meter).

**Prices** (:func:`cost_cents`): US cents per million input / output tokens, the longest
matching model-name prefix of :data:`DEFAULT_PRICES` merged with ``HASTE_AI_PRICES``; a
model matching nothing is priced by ``*`` (deliberately expensive, so an unknown model
cannot slip past a cost budget at zero).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config import Settings
from workers.ai_types import MODEL_TYPE
from workers.providers import Provider, ProviderError

#: US cents per 1M (input, output) tokens. Public list prices when written; override with
#: HASTE_AI_PRICES. Keys are model-name prefixes (dated snapshots match their family).
DEFAULT_PRICES: Mapping[str, tuple[float, float]] = {
    "gpt-4o-mini": (15.0, 60.0),
    "gpt-4o": (250.0, 1000.0),
    "gpt-4.1-nano": (10.0, 40.0),
    "gpt-4.1-mini": (40.0, 160.0),
    "gpt-4.1": (200.0, 800.0),
    "o4-mini": (110.0, 440.0),
    "text-embedding-3-small": (2.0, 0.0),
    "text-embedding-3-large": (13.0, 0.0),
    "text-embedding-ada-002": (10.0, 0.0),
    "claude-3-5-haiku": (80.0, 400.0),
    "claude-3-haiku": (25.0, 125.0),
    "claude-haiku-4": (100.0, 500.0),
    "claude-3-5-sonnet": (300.0, 1500.0),
    "claude-3-7-sonnet": (300.0, 1500.0),
    "claude-sonnet-4": (300.0, 1500.0),
    "claude-opus-4": (1500.0, 7500.0),
    "offline": (0.0, 0.0),
    "*": (1500.0, 7500.0),
}

REAL_PROVIDERS = ("openai", "anthropic")
BACKOFF_INITIAL = 1.0
"""Seconds before the second attempt when the provider named no ``Retry-After``."""
BACKOFF_MAX = 30.0
"""Cap on one back-off wait (a ``Retry-After`` may ask for more; see MAX_RETRY_AFTER)."""
MAX_RETRY_AFTER = 3600.0
"""Longest ``Retry-After`` honoured; a provider asking for more makes the task fail."""
RATE_WINDOW_S = 60
"""The rate limiters' sliding window: limits are requests per minute."""


class ConfigError(Exception):
    """The task cannot be routed (no key, unknown provider): fails at once, no call."""


@dataclass(frozen=True)
class Route:
    provider: str
    model: str

    def to_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model}


@dataclass(frozen=True)
class Plan:
    """The primary route and, in order, where to go on an outage."""

    primary: Route
    fallbacks: tuple[Route, ...] = ()
    source: str = "default"
    """Where the primary came from: 'step' | 'ai_models' | 'default' (recorded on the task)."""

    def routes(self) -> tuple[Route, ...]:
        return (self.primary, *self.fallbacks)


def default_model(settings: Settings, provider: str) -> str:
    if provider == "openai":
        return settings.openai_model
    if provider == "anthropic":
        return settings.anthropic_model
    return "offline-heuristic-v1"


def default_provider(settings: Settings, providers: Mapping[str, Provider]) -> str:
    """HASTE_AI_PROVIDER, with ``auto`` resolved against the keys that are set."""
    if settings.ai_provider != "auto":
        return settings.ai_provider
    for name in REAL_PROVIDERS:
        if name in providers:
            return name
    return "offline"


def _check(name: str, providers: Mapping[str, Provider]) -> None:
    if name in providers:
        return
    if name in REAL_PROVIDERS:
        key = "OPENAI_API_KEY" if name == "openai" else "ANTHROPIC_API_KEY"
        raise ConfigError(
            f"provider {name!r} is chosen for this task but {key} is not set"
            " (haste never substitutes the offline provider for a configured one)"
        )
    raise ConfigError(f"provider {name!r} is not served by haste (openai, anthropic, offline)")


def plan_route(
    settings: Settings,
    providers: Mapping[str, Provider],
    task_type: str,
    *,
    requested: Route | None = None,
    requested_provider: str | None = None,
    requested_model: str | None = None,
    workspace_model: Mapping[str, Any] | None = None,
) -> Plan:
    """The route of a task (see the module doc for the order of precedence)."""
    del task_type  # the caller already picked ``workspace_model`` for it
    if requested is not None:
        requested_provider, requested_model = requested.provider, requested.model
    row_provider = (workspace_model or {}).get("provider")
    row_model = (workspace_model or {}).get("model_id")
    config = (workspace_model or {}).get("config") or {}
    if requested_provider:
        provider, source = requested_provider, "step"
        model = requested_model or (row_model if row_provider == provider else None)
    elif requested_model and row_provider:
        provider, model, source = row_provider, requested_model, "step"
    elif row_provider:
        provider, model, source = row_provider, row_model, "ai_models"
    else:
        provider = default_provider(settings, providers)
        model, source = requested_model, ("step" if requested_model else "default")
    _check(provider, providers)
    primary = Route(provider, model or default_model(settings, provider))
    fallbacks: list[Route] = []
    if settings.ai_failover and provider in REAL_PROVIDERS:
        for other in REAL_PROVIDERS:
            if other != provider and other in providers:
                named = config.get("fallback_model") if isinstance(config, Mapping) else None
                fallbacks.append(Route(other, named or default_model(settings, other)))
    return Plan(primary, tuple(fallbacks), source)


def model_type_of(task_type: str) -> str:
    return MODEL_TYPE[task_type]


# --- prices --------------------------------------------------------------------------------


def price_of(
    model: str, prices: Mapping[str, tuple[float, float]] | None = None
) -> tuple[float, float]:
    """(input, output) US cents per 1M tokens for ``model``: longest prefix wins, else ``*``."""
    table = {**DEFAULT_PRICES, **(prices or {})}
    if model.startswith("offline"):
        return table.get("offline", (0.0, 0.0))
    best = ""
    for key in table:
        if key != "*" and model.startswith(key) and len(key) > len(best):
            best = key
    return table[best] if best else table["*"]


def cost_cents(
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> float:
    """Exact cost in US cents (fractional: ai_tasks.cost_cents rounds it, the ledger doesn't)."""
    cost_in, cost_out = price_of(model, prices)
    return (input_tokens * cost_in + output_tokens * cost_out) / 1_000_000


# --- retry policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt, and why (recorded in the task's attempts)."""

    action: Literal["retry", "failover", "fail"]
    delay: float
    reason: str


@dataclass(frozen=True)
class AiRetryPolicy:
    max_attempts: int
    initial: float = BACKOFF_INITIAL
    max_delay: float = BACKOFF_MAX
    jitter: bool = True

    def backoff(self, attempt: int) -> float:
        """Exponential from ``initial``, capped, with full jitter (attempt counts from 1)."""
        ceiling = min(self.max_delay, self.initial * (2 ** max(0, attempt - 1)))
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def after_error(self, error: ProviderError, attempt: int, can_failover: bool) -> Decision:
        """Decision after attempt number ``attempt`` (1-based) raised ``error``."""
        if not error.retryable:
            return Decision("fail", 0.0, f"{error.kind} errors are not retried")
        if attempt >= self.max_attempts:
            return Decision("fail", 0.0, f"gave up after {attempt} attempt(s)")
        if error.outage and can_failover:
            return Decision("failover", 0.0, f"{error.provider} outage ({error.kind}): failover")
        if error.retry_after is not None:
            if error.retry_after > MAX_RETRY_AFTER:
                too_long = f"Retry-After {error.retry_after:.0f}s is over {MAX_RETRY_AFTER:.0f}s"
                return Decision("fail", 0.0, too_long)
            return Decision("retry", max(error.retry_after, 0.0), "Retry-After honoured")
        return Decision("retry", self.backoff(attempt), f"{error.kind}: back-off")

    def after_invalid(self, attempt: int) -> Decision:
        """Decision after attempt ``attempt`` answered with output that fails the schema."""
        if attempt >= self.max_attempts:
            return Decision("fail", 0.0, f"invalid output after {attempt} attempt(s)")
        return Decision("retry", 0.0, "invalid output: asked again")


# --- rate limits ---------------------------------------------------------------------------


class RateLimited(Exception):
    """No slot under a provider's shared limit within the allowed wait."""


@dataclass
class RateLimits:
    """Per-provider requests-per-minute limits shared through Redis (see the module doc)."""

    limits: Mapping[str, int]
    backend: Any | None = None
    """A dramatiq.rate_limits backend; None means no limiting (tests, offline-only)."""
    sleep: Callable[[float], None] = time.sleep
    _limiters: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_client(cls, limits: Mapping[str, int], client: Any) -> RateLimits:
        """Limiters on an existing Redis client (the broker's)."""
        if not any(limits.values()):
            return cls(limits)
        from dramatiq.rate_limits.backends import RedisBackend

        return cls(limits, RedisBackend(client=client))

    @classmethod
    def from_redis_url(cls, limits: Mapping[str, int], redis_url: str | None) -> RateLimits:
        if not redis_url or not any(limits.values()):
            return cls(limits)
        import redis

        return cls.from_client(limits, redis.Redis.from_url(redis_url))

    def _limiter(self, provider: str) -> Any | None:
        limit = self.limits.get(provider, 0)
        if not limit or self.backend is None:
            return None
        with self._lock:
            limiter = self._limiters.get(provider)
            if limiter is None:
                from dramatiq.rate_limits import WindowRateLimiter

                limiter = WindowRateLimiter(
                    self.backend, f"haste-ai-rpm:{provider}", limit=limit, window=RATE_WINDOW_S
                )
                self._limiters[provider] = limiter
            return limiter

    def acquire(self, provider: str, max_wait: float) -> float:
        """Take one request slot for ``provider``; returns seconds waited, or raises."""
        limiter = self._limiter(provider)
        if limiter is None:
            return 0.0
        waited = 0.0
        while True:
            with limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return waited
            if waited >= max_wait:
                raise RateLimited(
                    f"{provider}: {self.limits[provider]} requests/minute used up"
                    f" (HASTE_AI_RATE_LIMITS); waited {waited:.1f}s"
                )
            pause = random.uniform(0.05, 0.25)
            self.sleep(pause)
            waited += pause
