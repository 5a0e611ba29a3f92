"""AI providers: the port (:mod:`.base`) and one module per provider.

``openai`` and ``anthropic`` wrap the official SDKs; ``offline`` is the labelled stand-in
for demos without a key. :func:`build_providers` makes the ones the configuration allows:
a real provider only when its key is set, ``offline`` always (whether it is *used* is
decided by :mod:`workers.ai_routing`, never silently in place of a configured one).
"""

from __future__ import annotations

from engine.config import Settings
from workers.providers.base import (
    EMBEDDING_DIMENSIONS,
    Completion,
    Embeddings,
    Provider,
    ProviderError,
    StructuredRequest,
)
from workers.providers.offline import OfflineProvider

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "PROVIDER_NAMES",
    "Completion",
    "Embeddings",
    "Provider",
    "ProviderError",
    "StructuredRequest",
    "build_providers",
]

#: Every provider haste knows (``ai_models.provider`` may also say perplexity/custom,
#: which haste does not serve: such a row is a configuration error on the task).
PROVIDER_NAMES = ("openai", "anthropic", "offline")


def build_providers(settings: Settings) -> dict[str, Provider]:
    """The providers this process may call, by name."""
    providers: dict[str, Provider] = {"offline": OfflineProvider()}
    if settings.openai_api_key:
        from workers.providers.openai import OpenAIProvider

        providers["openai"] = OpenAIProvider(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            api=settings.openai_api,
            timeout=settings.ai_timeout,
        )
    if settings.anthropic_api_key:
        from workers.providers.anthropic import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            timeout=settings.ai_timeout,
        )
    return providers
