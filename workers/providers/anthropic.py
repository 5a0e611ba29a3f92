"""Anthropic through the official ``anthropic`` SDK: structured output as a forced tool call.

The output schema becomes the ``input_schema`` of one tool, and ``tool_choice`` forces the
model to call it, so the answer arrives as the tool call's ``input`` object. A model that
answers in text anyway (a compatible server, a ``max_tokens`` stop) is read as JSON text if
it is, else reported as an invalid output. Anthropic has no embeddings API: ``embed`` is the
port's ``unsupported`` error, and embeddings never fail over here.

Status 529 (``overloaded_error``) is an outage like a 5xx: the lifecycle may fail over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import anthropic

from workers.providers.base import (
    Completion,
    Provider,
    ProviderError,
    StructuredRequest,
    kind_of_status,
    parse_json_text,
    parse_retry_after,
)


def translate(exc: Exception) -> ProviderError:
    """The port's error for an SDK exception."""
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("anthropic", "timeout", "request timed out")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError("anthropic", "network", f"connection failed: {exc.__cause__ or exc}")
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body
        message = exc.message
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message") or message
        return ProviderError(
            "anthropic",
            kind_of_status(exc.status_code),
            f"HTTP {exc.status_code}: {message}",
            status=exc.status_code,
            retry_after=parse_retry_after(exc.response.headers),
        )
    return ProviderError("anthropic", "malformed", f"unreadable response: {exc}")


@dataclass
class AnthropicProvider(Provider):
    """Anthropic's Messages API (or a server speaking it at ``base_url``)."""

    name: ClassVar[str] = "anthropic"
    embeds: ClassVar[bool] = False
    api_key: str = field(default="", repr=False)
    base_url: str | None = None
    timeout: float = 60.0
    _client: anthropic.Anthropic | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> anthropic.Anthropic:
        if self._client is None:
            self._client = anthropic.Anthropic(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
            )
        return self._client

    def complete(self, request: StructuredRequest) -> Completion:
        headers = {"Idempotency-Key": request.idempotency_key} if request.idempotency_key else {}
        try:
            response = self.client.messages.create(
                model=request.model,
                max_tokens=request.max_output_tokens,
                system=request.system,
                messages=[{"role": "user", "content": request.prompt}],
                tools=[
                    {
                        "name": request.schema_name,
                        "description": f"Record the result of the {request.task_type} task.",
                        "input_schema": dict(request.schema),
                    }
                ],
                tool_choice={"type": "tool", "name": request.schema_name},
                timeout=request.timeout,
                extra_headers=headers,
            )
            blocks = list(response.content or [])
            usage = response.usage
            input_tokens = int(getattr(usage, "input_tokens", 0) or 0)
            output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
            model = response.model or request.model
            stop = response.stop_reason
        except (anthropic.AnthropicError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise translate(exc) from exc
        for block in blocks:
            if getattr(block, "type", None) == "tool_use":
                data = getattr(block, "input", None)
                not_object = None if isinstance(data, dict) else "the tool input is not an object"
                return Completion(
                    self.name,
                    model,
                    data,
                    repr(data),
                    input_tokens,
                    output_tokens,
                    parse_error=not_object,
                    finish_reason=stop,
                )
        text = "".join(getattr(b, "text", "") or "" for b in blocks)
        completion = parse_json_text(
            self.name,
            model,
            text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=stop,
        )
        if completion.parse_error:
            return Completion(
                self.name,
                model,
                None,
                text,
                input_tokens,
                output_tokens,
                parse_error=f"no {request.schema_name} tool call in the answer (stop: {stop})",
                finish_reason=stop,
            )
        return completion

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
