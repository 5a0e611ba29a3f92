"""The provider port: one structured-output call and one embeddings call, and one error type.

Every provider (``openai``, ``anthropic``, and the ``offline`` stand-in) turns its SDK's
answers and exceptions into these types, so that the lifecycle in :mod:`workers.ai_tasks`
decides retries, failover and budgets the same way whoever answered:

* :class:`StructuredRequest` → :class:`Completion` — the provider is *asked* for JSON that
  matches a schema (OpenAI ``response_format: json_schema``, Anthropic a forced tool call).
  Whether the answer really matches is checked by the caller (``jsonschema``), because
  neither mechanism is a guarantee (compatible servers ignore it, old models drift, a
  ``max_tokens`` stop truncates). A body that is not JSON at all comes back as a
  :class:`Completion` with ``data`` None and ``parse_error`` set: an invalid output, billed
  (the tokens were spent) and retried like a schema violation.
* :class:`ProviderError` — everything that is not an answer, with a ``kind`` the retry
  policy reads: ``rate_limited`` (429; ``retry_after`` from the headers), ``server`` (5xx,
  Anthropic's 529 ``overloaded``), ``network``, ``timeout``, ``malformed`` (a 2xx whose body
  the SDK could not read), ``client`` (other 4xx: the request is wrong, retrying repeats
  it), ``auth`` (401/403: a configuration problem) and ``unsupported``.

SDK retries are switched off (``max_retries=0``) in every client: the lifecycle retries, so
that each attempt is recorded on the task, counts against ``HASTE_AI_MAX_ATTEMPTS``, passes
the shared rate limiter again, and may fail over to the other provider.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal

ErrorKind = Literal[
    "rate_limited", "server", "network", "timeout", "malformed", "client", "auth", "unsupported"
]

#: Kinds worth another attempt (on the same provider, or after failover).
RETRYABLE_KINDS = frozenset({"rate_limited", "server", "network", "timeout", "malformed"})
#: Kinds that mean "this provider is down for now": the other provider may take over.
OUTAGE_KINDS = frozenset({"server", "network", "timeout"})

#: Width of the spec's ``embedding vector(1536)`` columns.
EMBEDDING_DIMENSIONS = 1536


class ProviderError(Exception):
    """A call that produced no answer; ``kind`` decides what the lifecycle does next."""

    def __init__(
        self,
        provider: str,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    @property
    def outage(self) -> bool:
        return self.kind in OUTAGE_KINDS

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "status": self.status,
            "retry_after": self.retry_after,
        }


def kind_of_status(status: int) -> ErrorKind:
    """The error kind of an HTTP status (the same table for every provider)."""
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status == 409 or status >= 500:
        # 409 is OpenAI's "conflict, try again"; 529 is Anthropic's "overloaded".
        return "server"
    return "client"


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000
            return value if math.isfinite(value) and value >= 0 else None
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class StructuredRequest:
    """One prompt that must be answered with JSON matching ``schema``."""

    task_type: str
    model: str
    system: str
    prompt: str
    schema_name: str
    schema: Mapping[str, Any]
    """The schema as sent to the provider (see :func:`workers.ai_types.provider_schema`)."""
    max_output_tokens: int
    timeout: float
    idempotency_key: str | None = None
    """Sent as ``Idempotency-Key`` (stable per task), like every external action of haste."""


@dataclass(frozen=True)
class Completion:
    """A provider's answer: parsed JSON (or why it could not be parsed) and its token usage."""

    provider: str
    model: str
    data: Any
    raw: str
    input_tokens: int
    output_tokens: int
    parse_error: str | None = None
    finish_reason: str | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Embeddings:
    """Vectors in input order, and the tokens the request was billed for."""

    provider: str
    model: str
    vectors: list[list[float]]
    tokens: int
    requests: int = 1


def parse_json_text(provider: str, model: str, text: str, **usage: Any) -> Completion:
    """A completion from a text body that should be JSON; a bad body is kept as the reason."""
    try:
        data = json.loads(text)
        error = None
    except (TypeError, ValueError) as exc:
        data, error = None, f"the answer is not JSON: {exc}"
    return Completion(provider, model, data, text or "", parse_error=error, **usage)


@dataclass
class Provider(ABC):
    """A source of structured completions and (maybe) embeddings."""

    name: ClassVar[str]
    offline: ClassVar[bool] = False
    """True only for the stand-in: its output is labelled, never mistaken for a model's."""
    embeds: ClassVar[bool] = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @abstractmethod
    def complete(self, request: StructuredRequest) -> Completion:
        """Ask for ``request.schema``-shaped JSON; raise :class:`ProviderError` if no answer."""

    def embed(self, texts: Sequence[str], *, model: str, timeout: float) -> Embeddings:
        """One request embedding every text (the caller batches); 1536 floats each."""
        raise ProviderError(self.name, "unsupported", f"{self.name} has no embeddings API")

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the HTTP client, if any."""
