"""OpenAI through the official ``openai`` SDK: structured output and embeddings.

Structured output is requested as ``response_format: {"type": "json_schema", "strict":
true}`` on Chat Completions (the default: every OpenAI-compatible server speaks it) or as
``text.format`` on the Responses API (``HASTE_OPENAI_API=responses``). Strict mode accepts
a subset of JSON Schema, so the schema sent is :func:`workers.ai_types.provider_schema`
(lengths stripped); the full schema is still checked on our side.

Embeddings are asked for as floats (``encoding_format="float"``: the SDK's base64 default
wants numpy, which haste does not depend on) and, for the ``text-embedding-3`` family,
with ``dimensions=1536`` to fit the spec's ``vector(1536)`` columns.

A server that returns no ``usage`` (some compatible ones) is billed by an estimate of four
characters per token, so budgets still move.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import openai

from workers.providers.base import (
    EMBEDDING_DIMENSIONS,
    Completion,
    Embeddings,
    Provider,
    ProviderError,
    StructuredRequest,
    kind_of_status,
    parse_json_text,
    parse_retry_after,
)


def estimate_tokens(text: str) -> int:
    """~4 characters per token: the usual rule of thumb for English text."""
    return max(1, len(text) // 4)


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return f"HTTP {exc.status_code}: {error['message']}"
    return f"HTTP {exc.status_code}: {exc.message}"


def translate(exc: Exception, provider: str = "openai") -> ProviderError:
    """The port's error for an SDK exception (shared with OpenAI-compatible providers)."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(provider, "timeout", "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(provider, "network", f"connection failed: {exc.__cause__ or exc}")
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            provider,
            kind_of_status(exc.status_code),
            _error_message(exc),
            status=exc.status_code,
            retry_after=parse_retry_after(exc.response.headers),
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return ProviderError(provider, "malformed", f"unreadable response: {exc.message}")
    return ProviderError(provider, "malformed", f"unreadable response: {exc}")


@dataclass
class OpenAIProvider(Provider):
    """OpenAI (or a server speaking its API at ``base_url``)."""

    name: ClassVar[str] = "openai"
    api_key: str = field(default="", repr=False)
    base_url: str | None = None
    api: str = "chat"
    timeout: float = 60.0
    _client: openai.OpenAI | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
            )
        return self._client

    def complete(self, request: StructuredRequest) -> Completion:
        headers = {"Idempotency-Key": request.idempotency_key} if request.idempotency_key else {}
        try:
            if self.api == "responses":
                return self._responses(request, headers)
            return self._chat(request, headers)
        except ProviderError:
            raise
        except (openai.OpenAIError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise translate(exc, self.name) from exc

    def _chat(self, request: StructuredRequest, headers: dict[str, str]) -> Completion:
        response = self.client.chat.completions.create(
            model=request.model,
            messages=[
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.prompt},
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": dict(request.schema),
                    "strict": True,
                },
            },
            max_completion_tokens=request.max_output_tokens,
            timeout=request.timeout,
            extra_headers=headers,
        )
        if not response.choices:
            raise ProviderError(self.name, "malformed", "the response has no choices")
        choice = response.choices[0]
        message = choice.message
        content = message.content or ""
        usage = response.usage
        input_tokens = usage.prompt_tokens if usage else estimate_tokens(request.prompt)
        output_tokens = usage.completion_tokens if usage else estimate_tokens(content)
        model = response.model or request.model
        if getattr(message, "refusal", None):
            return Completion(
                self.name,
                model,
                None,
                content,
                input_tokens,
                output_tokens,
                parse_error=f"the model refused: {message.refusal}",
                finish_reason=choice.finish_reason,
            )
        return parse_json_text(
            self.name,
            model,
            content,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=choice.finish_reason,
        )

    def _responses(self, request: StructuredRequest, headers: dict[str, str]) -> Completion:
        response = self.client.responses.create(
            model=request.model,
            instructions=request.system,
            input=request.prompt,
            text={
                "format": {
                    "type": "json_schema",
                    "name": request.schema_name,
                    "schema": dict(request.schema),
                    "strict": True,
                }
            },
            max_output_tokens=request.max_output_tokens,
            timeout=request.timeout,
            extra_headers=headers,
        )
        content = response.output_text or ""
        usage = response.usage
        return parse_json_text(
            self.name,
            response.model or request.model,
            content,
            input_tokens=usage.input_tokens if usage else estimate_tokens(request.prompt),
            output_tokens=usage.output_tokens if usage else estimate_tokens(content),
            finish_reason=response.status,
        )

    def embed(self, texts: Sequence[str], *, model: str, timeout: float) -> Embeddings:
        extra: dict[str, Any] = {}
        if "text-embedding-3" in model:
            extra["dimensions"] = EMBEDDING_DIMENSIONS
        try:
            response = self.client.embeddings.create(
                model=model,
                input=list(texts),
                encoding_format="float",
                timeout=timeout,
                **extra,
            )
            rows = sorted(response.data, key=lambda d: d.index)
            vectors = [list(map(float, row.embedding)) for row in rows]
        except ProviderError:
            raise
        except (openai.OpenAIError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise translate(exc, self.name) from exc
        if len(vectors) != len(texts):
            raise ProviderError(
                self.name, "malformed", f"{len(vectors)} embeddings for {len(texts)} inputs"
            )
        for vector in vectors:
            if len(vector) != EMBEDDING_DIMENSIONS:
                raise ProviderError(
                    self.name,
                    "client",
                    f"model {model} returned {len(vector)} dimensions,"
                    f" the columns hold {EMBEDDING_DIMENSIONS}",
                )
        usage = response.usage
        tokens = usage.total_tokens if usage is not None else sum(estimate_tokens(t) for t in texts)
        return Embeddings(self.name, response.model or model, vectors, tokens)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def dump_schema(schema: Any) -> str:
    """Compact JSON of a schema (for request fingerprints in tests and logs)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))
