"""The AI tables' housekeeping (docs/ai.md): expired response-cache rows, and the spec's
contacts ivfflat retrained when its vectors have grown.

Both only call what the AI modules already provide (imported late: the scheduler does
not load the AI stack to start). ``maintain_vector_indexes`` needs an autocommit owner
connection outside any transaction, which is what a job gets; it takes an advisory lock,
so a run that meets the AI worker's own periodic check (or a backfill) rebuilding the
index reports it and does nothing.
"""

from __future__ import annotations

from typing import Any

from workers.maintenance import JobContext


def purge_cache(ctx: JobContext) -> dict[str, Any]:
    """Delete ``ai_response_cache`` rows past ``expires_at``, every workspace."""
    from workers.ai_guardrails import purge_cache as purge

    return {"deleted": purge(ctx.conn)}


def vector_indexes(ctx: JobContext) -> dict[str, Any]:
    """Retrain ``idx_contacts_embedding`` when it was never built on data or its vectors
    have doubled since (``workers.embeddings.maintain_vector_indexes``)."""
    from workers.embeddings import maintain_vector_indexes

    return maintain_vector_indexes(ctx.conn)
