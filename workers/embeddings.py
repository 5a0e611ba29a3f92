"""Embeddings of contacts and companies: scheduling, batched refresh, back-fill, search.

**Queue and state in one table.** ``ai_embeddings`` has a row per record that has (or
waits for) a vector: ``requested_at`` set means a refresh is pending, ``model_name`` and
``text_hash`` say what produced the current vector. The listener calls
:func:`schedule_embeddings` in its transaction for contact/company events whose text
fields changed (:func:`embedding_text_changed`), then :func:`kick` after its commit; a
burst of changes to one record is one pending row (upsert), so one write.

**Refresh** (:func:`embed_batch`, :func:`drain`; the ``embed_pending`` actor on queue
``ai``): claim up to ``HASTE_EMBEDDING_BATCH`` pending rows (``FOR UPDATE SKIP LOCKED``, a
lease in ``claimed_until``), read their text under each workspace's RLS, skip rows whose
text and model are unchanged (no call), send the rest to the provider **as one request per
batch**, write the vectors with one ``UPDATE ... FROM unnest(ids, vectors)`` per workspace
(binary pgvector parameters), and clear the requests — unless a newer request arrived
after the claim (``requested_at`` later than the claim time, both ``clock_timestamp()``),
which then stays pending, so a change made while a batch is in flight is never lost.
A failed batch is retried after an exponential back-off (``attempts``), the error kept in
``last_error``. Embedding tokens go to the workspace's AI ledger and budget like tasks.

**Provider**: the workspace's ``ai_models`` row of type ``embedding``, else
``HASTE_EMBEDDING_PROVIDER`` (``auto``: OpenAI when its key is set, else ``offline``).
Anthropic has no embeddings API. Vectors are 1536 floats (the spec's column width).

**Back-fill** (:func:`backfill`, ``haste embeddings backfill``): schedule every live record
without a vector, or whose vector came from another model, then drain, then train the
contacts index (:func:`maintain_vector_indexes`).

**Indexes**: contacts keep the spec's ivfflat as their only vector index, rebuilt by
:func:`maintain_vector_indexes` with ~sqrt(rows) lists once there is data and whenever it
has doubled (the spec builds it on an empty table: untrained centroids); companies get an
HNSW (no spec index, few writes, no training needed). Why, with numbers: docs/ai.md "Index
choice" (bench G11: HNSW made each contact embedding write 2.5-4x slower).

**Search** (:func:`search`, ``haste search``): hybrid. The query is embedded with the
workspace's model; the nearest ``SEARCH_CANDIDATES`` of contacts (ivfflat, a 32nd of its
lists; every list below ``EXACT_BELOW`` vectors) and of companies (HNSW)
by cosine distance and the best full-text matches (the spec's GIN expressions, query words
OR-ed) are each ranked, and fused by reciprocal rank fusion, ``score = Σ 1/(60 + rank)``.
RRF needs no calibration between a cosine distance and a ``ts_rank``, which live on
unrelated scales, and rewards records that both lists rank high. Row-level security filters
the index scans to the workspace after the fact, so the iterative scans of pgvector 0.8
keep scanning until enough rows of *this* workspace are found. The index choice and its
numbers are in docs/ai.md and bench/README.md (G11).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector

from engine.db import system_transaction, tenant_transaction
from engine.queries import query
from workers import ai_guardrails as guardrails
from workers.ai_routing import ConfigError, RateLimited, Route, cost_cents
from workers.ai_tasks import AiRuntime
from workers.providers import ProviderError
from workers.providers.offline import EMBEDDING_MODEL as OFFLINE_EMBEDDING_MODEL

log = logging.getLogger("haste.embeddings")

Conn = psycopg.Connection[Any]

ENTITIES = ("contact", "company")
#: The columns whose text is embedded, per entity (a change to any of them re-embeds).
EMBEDDING_FIELDS: Mapping[str, tuple[str, ...]] = {
    "contact": (
        "first_name",
        "last_name",
        "email",
        "title",
        "department",
        "company",
        "city",
        "state",
        "country",
        "website",
    ),
    "company": (
        "name",
        "domain",
        "website",
        "industry",
        "description",
        "city",
        "state",
        "country",
        "company_size",
    ),
}
TABLES = {"contact": "contacts", "company": "companies"}
LEASE_S = 300
"""Seconds a worker holds claimed rows; after that another worker may take them."""
MAX_ATTEMPTS_INLINE = 3
"""Provider calls per batch (with back-off) before the batch is put back with a delay."""
RETRY_BASE_S = 30.0
"""First delay of a batch that failed; doubles per failed claim, capped at an hour."""
SEARCH_CANDIDATES = 50
"""Rows each ranked list (vector, full text) contributes to the fusion."""
RRF_K = 60
"""Reciprocal rank fusion constant (the usual 60: damps the head of each list)."""
CONTACTS_VECTOR_INDEX = "idx_contacts_embedding"
"""The spec's ivfflat on contacts.embedding: contacts' one vector index."""
IVFFLAT_LISTS = 100
"""The spec index's lists (pgvector's default, the spec names none): the floor of tuning."""
PROBES_PER_LIST = 1 / 32
"""Lists searched per query, as a share of all lists (at least 3): 10 of 316 lists at 100k
vectors gave recall@10 1.0 and p99 ~12 ms in bench G11 (see docs/ai.md)."""
EXACT_BELOW = 2_000
"""Below this many indexed vectors search probes every list: an exact scan, still fast,
and immune to an index trained on little data."""
MIN_TRAINING_ROWS = 100
"""Vectors needed before the ivfflat is (re)built: one per list."""
REBUILD_GROWTH = 2.0
"""Rebuild the ivfflat when its vectors have grown by this factor since its last build."""
MAINTENANCE_LOCK = 0x68617374656976
"""Advisory lock key of the index upkeep ("hasteiv"): one rebuild at a time."""


def lists_for(vectors: int) -> int:
    """ivfflat lists for ``vectors`` rows: ~sqrt(rows) (fewer, longer lists gave a p99 of
    28 ms at 100k in bench G11, over the 20 ms goal), never below the spec's 100."""
    return max(IVFFLAT_LISTS, round(math.sqrt(max(vectors, 0))))


def probes_for(lists: int, indexed_rows: float) -> int:
    """Lists one search probes: all of them while the index is small, else a share."""
    if indexed_rows < EXACT_BELOW:
        return lists
    return min(lists, max(3, math.ceil(lists * PROBES_PER_LIST)))


HNSW_EF_SEARCH = 100
"""hnsw.ef_search for the companies' HNSW (the default 40 gave recall@10 ~0.85 at 100k in
bench G11, 100 ~0.95)."""
KICK_KEY = "haste:embeddings:kick"
KICK_DEBOUNCE_MS = 500
"""A burst of schedules within this window sends one message."""
TEXT_LIMIT = 8000
"""Characters of a record's text sent to the provider (far under any model's input cap)."""


def embedding_text_changed(entity_type: str, changed_fields: Iterable[str]) -> bool:
    """Whether a change to ``changed_fields`` of an ``entity_type`` record needs a new vector
    (pure; the listener asks before :func:`schedule_embeddings`)."""
    fields = EMBEDDING_FIELDS.get(entity_type)
    return bool(fields) and any(f in fields for f in changed_fields)


def embedding_text(entity_type: str, row: Mapping[str, Any]) -> str:
    """The text a record is embedded from: labelled fields, one per line, empty ones left out."""
    parts: list[str] = []
    if entity_type == "contact":
        name = " ".join(str(row[k]) for k in ("first_name", "last_name") if row.get(k))
        if name:
            parts.append(name)
        role = " ".join(str(row[k]) for k in ("title",) if row.get(k))
        if row.get("department"):
            role = f"{role}, {row['department']}" if role else str(row["department"])
        if role:
            parts.append(role)
        for key in ("company", "email", "website"):
            if row.get(key):
                parts.append(f"{key}: {row[key]}")
    else:
        for key in ("name", "industry", "domain", "website", "company_size", "description"):
            if row.get(key):
                parts.append(str(row[key]) if key == "name" else f"{key}: {row[key]}")
    place = ", ".join(str(row[k]) for k in ("city", "state", "country") if row.get(k))
    if place:
        parts.append(f"location: {place}")
    return "\n".join(parts)[:TEXT_LIMIT]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def schedule_embeddings(cur: psycopg.Cursor[Any], entity_type: str, ids: Iterable[Any]) -> int:
    """Mark records for (re-)embedding, in the caller's transaction; how many were marked.

    Call :func:`kick` after the commit so a worker picks them up promptly (the AI worker's
    sweep finds them anyway).
    """
    if entity_type not in ENTITIES:
        raise ValueError(f"embeddings exist for {', '.join(ENTITIES)}, not {entity_type!r}")
    id_list = [str(i) for i in ids]
    if not id_list:
        return 0
    name = f"embedding_schedule_{TABLES[entity_type]}"
    return len(cur.execute(query(name), {"ids": id_list}).fetchall())


def kick(redis_client: Any | None = None) -> bool:
    """Send one ``embed_pending`` message per debounce window (after a commit); whether
    this call sent it. Never raises: the message is a hint, the AI worker's sweep finds
    pending rows within ``SWEEP_INTERVAL_S`` anyway."""
    try:
        from workers.broker import get_broker

        broker = get_broker()
        client = redis_client or getattr(broker, "client", None)
        if client is not None and not client.set(KICK_KEY, b"1", nx=True, px=KICK_DEBOUNCE_MS):
            return False
        # Sent by name: a process that schedules need not import the actors.
        from dramatiq import Message

        broker.enqueue(
            Message(queue_name="ai", actor_name="embed_pending", args=(), kwargs={}, options={}),
            delay=KICK_DEBOUNCE_MS,
        )
        return True
    except Exception as exc:
        global _kick_warned_at
        if time.monotonic() - _kick_warned_at > 60:  # one warning a minute, not one per event
            _kick_warned_at = time.monotonic()
            log.warning("could not send embed_pending (the AI sweep will): %s", exc)
        return False


_kick_warned_at = -math.inf


def _entity_of(raw: Any) -> str | None:
    text = str(raw or "")
    return text if text in ENTITIES else {"contacts": "contact", "companies": "company"}.get(text)


def on_record_event(cur: psycopg.Cursor[Any], event: Mapping[str, Any]) -> None:
    """The listener's hook, for every CRM event inside its transaction (workspace set):
    a contact or company created, or updated in a text field, is scheduled for
    (re-)embedding; a deleted one forgets its state. Then a debounced ``embed_pending`` is
    sent, delayed past the listener's commit (if it still arrives first, the sweep covers
    it). ``event``: entity_type, entity_id, operation, event_type, changed_fields, new."""
    entity = _entity_of(event.get("entity_type"))
    entity_id = event.get("entity_id")
    if entity is None or not entity_id:
        return
    operation = str(event.get("operation") or "").lower()
    new = event.get("new") or {}
    changed = set(event.get("changed_fields") or ())
    if operation in ("delete", "deleted") or ("deleted_at" in changed and new.get("deleted_at")):
        cur.execute(
            query("embedding_forget_many"), {"entity_type": entity, "ids": [str(entity_id)]}
        )
        return
    created = operation in ("insert", "create", "created") or str(
        event.get("event_type") or ""
    ).endswith("_created")
    if created or embedding_text_changed(entity, changed) or "deleted_at" in changed:
        schedule_embeddings(cur, entity, [entity_id])
        kick()


# --- routing -------------------------------------------------------------------------------


def embedding_route(rt: AiRuntime, workspace_model: Mapping[str, Any] | None) -> Route:
    """The provider and model embedding a workspace's records (see the module doc)."""
    settings = rt.settings
    if workspace_model and workspace_model.get("provider"):
        provider = str(workspace_model["provider"])
        model = workspace_model.get("model_id") or settings.embedding_model
    else:
        provider = settings.embedding_provider
        if provider == "auto":
            provider = "openai" if "openai" in rt.providers else "offline"
        model = settings.embedding_model
    if provider == "offline":
        return Route("offline", OFFLINE_EMBEDDING_MODEL)
    if provider not in rt.providers:
        raise ConfigError(
            f"embedding provider {provider!r} is chosen but not configured"
            " (OPENAI_API_KEY unset?); haste never substitutes offline vectors"
        )
    if not rt.providers[provider].embeds:
        raise ConfigError(f"provider {provider!r} has no embeddings API")
    return Route(provider, str(model))


def workspace_route(rt: AiRuntime, cur: psycopg.Cursor[Any]) -> Route:
    return embedding_route(rt, cur.execute(query("embedding_model_for_workspace")).fetchone())


def embed_texts(
    rt: AiRuntime, route: Route, texts: Sequence[str]
) -> tuple[list[list[float]], int, int]:
    """Vectors of ``texts`` in batches of HASTE_EMBEDDING_BATCH: (vectors, tokens, requests).

    Each request waits for a rate-limiter slot and is retried (back-off, Retry-After) up to
    :data:`MAX_ATTEMPTS_INLINE` times; then the :class:`ProviderError` propagates.
    """
    provider = rt.providers[route.provider]
    size = rt.settings.embedding_batch
    vectors: list[list[float]] = []
    tokens = requests = 0
    for start in range(0, len(texts), size):
        chunk = list(texts[start : start + size])
        for attempt in range(1, MAX_ATTEMPTS_INLINE + 1):
            try:
                rt.rate_limits.acquire(route.provider, rt.settings.ai_max_inline_wait)
                requests += 1
                result = provider.embed(chunk, model=route.model, timeout=rt.settings.ai_timeout)
                break
            except RateLimited as exc:
                raise ProviderError(route.provider, "rate_limited", str(exc)) from exc
            except ProviderError as exc:
                if not exc.retryable or attempt == MAX_ATTEMPTS_INLINE:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else 2.0**attempt
                if wait > rt.settings.ai_max_inline_wait:
                    raise
                rt.sleep(wait * (1 if exc.retry_after is not None else random.uniform(0.5, 1)))
        vectors.extend(result.vectors)
        tokens += result.tokens
    return vectors, tokens, requests


# --- refresh -------------------------------------------------------------------------------


@dataclass
class EmbedResult:
    """What a refresh did (summed over batches by :func:`drain`)."""

    claimed: int = 0
    written: int = 0
    unchanged: int = 0
    forgotten: int = 0
    failed: int = 0
    requests: int = 0
    tokens: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: EmbedResult) -> None:
        for name in ("claimed", "written", "unchanged", "forgotten", "failed", "requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tokens += other.tokens
        self.errors.extend(other.errors)


@dataclass
class _Item:
    entity_type: str
    entity_id: UUID
    workspace_id: UUID
    text: str = ""
    hash: str = ""
    vector: list[float] | None = None


def _retry_delay(attempts: int) -> float:
    return min(3600.0, RETRY_BASE_S * 2 ** max(0, attempts - 1))


def embed_batch(conn: Conn, rt: AiRuntime, *, limit: int | None = None) -> EmbedResult:
    """Claim and refresh one batch of pending records (see the module doc)."""
    result = EmbedResult()
    limit = limit or rt.settings.embedding_batch
    with system_transaction(conn, dict_rows=True) as cur:
        claimed = cur.execute(
            query("embedding_claim_many"), {"lease": LEASE_S, "limit": limit}
        ).fetchall()
    if not claimed:
        return result
    result.claimed = len(claimed)
    claimed_at = max(r["claimed_at"] for r in claimed)
    by_workspace: dict[UUID, list[Mapping[str, Any]]] = defaultdict(list)
    for row in claimed:
        by_workspace[row["workspace_id"]].append(row)
    # Read texts under each workspace's RLS; group what needs a call by route.
    todo: dict[Route, list[_Item]] = defaultdict(list)
    for workspace_id, rows in by_workspace.items():
        try:
            _collect(conn, rt, workspace_id, rows, claimed_at, todo, result)
        except (ConfigError, guardrails.BudgetExceeded) as exc:
            _failed(conn, workspace_id, rows, claimed_at, str(exc), 3600.0)
            result.failed += len(rows)
            result.errors.append(str(exc))
    for route, items in todo.items():
        try:
            vectors, tokens, requests = embed_texts(rt, route, [i.text for i in items])
        except ProviderError as exc:
            result.requests += 1
            attempts = max(int(r["attempts"]) for r in claimed)
            for workspace_id, group in _by_workspace(items).items():
                rows = [{"entity_type": i.entity_type, "entity_id": i.entity_id} for i in group]
                _failed(conn, workspace_id, rows, claimed_at, str(exc), _retry_delay(attempts))
            result.failed += len(items)
            result.errors.append(str(exc))
            continue
        result.requests += requests
        result.tokens += tokens
        for item, vector in zip(items, vectors, strict=True):
            item.vector = vector
        total_chars = sum(len(i.text) for i in items) or 1
        for workspace_id, group in _by_workspace(items).items():
            share = round(tokens * sum(len(i.text) for i in group) / total_chars)
            _write(conn, rt, workspace_id, route, group, claimed_at, share)
            result.written += len(group)
    return result


def _by_workspace(items: Iterable[_Item]) -> dict[UUID, list[_Item]]:
    groups: dict[UUID, list[_Item]] = defaultdict(list)
    for item in items:
        groups[item.workspace_id].append(item)
    return groups


def _collect(
    conn: Conn,
    rt: AiRuntime,
    workspace_id: UUID,
    rows: Sequence[Mapping[str, Any]],
    claimed_at: Any,
    todo: dict[Route, list[_Item]],
    result: EmbedResult,
) -> None:
    with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
        route = workspace_route(rt, cur)
        unchanged: list[_Item] = []
        pending: list[_Item] = []
        for entity in ENTITIES:
            wanted = {r["entity_id"]: r for r in rows if r["entity_type"] == entity}
            if not wanted:
                continue
            found = {
                r["id"]: r
                for r in cur.execute(
                    query(f"embedding_source_{TABLES[entity]}"), {"ids": [str(i) for i in wanted]}
                ).fetchall()
            }
            gone = [i for i in wanted if i not in found]
            if gone:
                cur.execute(
                    query("embedding_forget_many"),
                    {"entity_type": entity, "ids": [str(i) for i in gone]},
                )
                result.forgotten += len(gone)
            for entity_id, source in found.items():
                text = embedding_text(entity, source)
                item = _Item(entity, entity_id, workspace_id, text, text_hash(text))
                state = wanted[entity_id]
                if (
                    source["has_vector"]
                    and state["text_hash"] == item.hash
                    and state["model_name"] == route.model
                ):
                    unchanged.append(item)
                else:
                    pending.append(item)
        if unchanged:
            _done(cur, route, unchanged, claimed_at, wrote=False)
            result.unchanged += len(unchanged)
        if pending:
            # Checked before the call like a task's budget; no reservation, because the
            # batch settles its real usage in this same worker turn, moments later.
            estimate = guardrails.estimate_prompt_tokens(*(i.text for i in pending))
            guardrails.check(
                cur,
                rt.settings,
                workspace_id,
                None,
                estimate,
                cost_cents(route.model, estimate, 0, rt.settings.ai_prices),
            )
            todo[route].extend(pending)


def _done(
    cur: psycopg.Cursor[Any], route: Route, items: Sequence[_Item], claimed_at: Any, *, wrote: bool
) -> None:
    cur.execute(
        query("embedding_done_many"),
        {
            "claimed_at": claimed_at,
            "provider": route.provider,
            "model": route.model,
            "types": [i.entity_type for i in items],
            "ids": [str(i.entity_id) for i in items],
            "hashes": [i.hash for i in items],
            "wrote": [wrote] * len(items),
        },
    )


def _write(
    conn: Conn,
    rt: AiRuntime,
    workspace_id: UUID,
    route: Route,
    items: Sequence[_Item],
    claimed_at: Any,
    tokens: int,
) -> None:
    register_vector(conn)
    with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
        for entity in ENTITIES:
            group = [i for i in items if i.entity_type == entity and i.vector is not None]
            if group:
                cur.execute(
                    query(f"embedding_write_{TABLES[entity]}"),
                    {
                        "ids": [str(i.entity_id) for i in group],
                        "vectors": [Vector(i.vector) for i in group],
                    },
                )
        _done(cur, route, items, claimed_at, wrote=True)
        guardrails.settle(
            cur,
            workspace_id,
            None,
            tokens=tokens,
            cents=cost_cents(route.model, tokens, 0, rt.settings.ai_prices),
            calls=1,
        )


def _failed(
    conn: Conn,
    workspace_id: UUID,
    rows: Sequence[Mapping[str, Any]],
    claimed_at: Any,
    error: str,
    delay: float,
) -> None:
    log.warning("embeddings of %d record(s) failed, retry in %.0fs: %s", len(rows), delay, error)
    with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
        cur.execute(
            query("embedding_failed_many"),
            {
                "claimed_at": claimed_at,
                "delay": delay,
                "error": error[:2000],
                "types": sorted({r["entity_type"] for r in rows}),
                "ids": [str(r["entity_id"]) for r in rows],
            },
        )


def drain(conn: Conn, rt: AiRuntime, *, max_batches: int | None = None) -> EmbedResult:
    """Refresh batches until nothing is pending and due (or ``max_batches`` were done)."""
    total = EmbedResult()
    batches = 0
    while max_batches is None or batches < max_batches:
        result = embed_batch(conn, rt)
        total.add(result)
        batches += 1
        if result.claimed == 0 or (result.failed and result.failed == result.claimed):
            break
    return total


def maintain_vector_indexes(conn: Conn, *, force: bool = False) -> dict[str, Any]:
    """Train the spec's contacts ivfflat on the data: ``REINDEX INDEX CONCURRENTLY`` when it
    has never been built on at least MIN_TRAINING_ROWS vectors, or its vectors have grown
    REBUILD_GROWTH-fold since (k-means centroids from a small or old sample put most new
    vectors in a few lists, and recall falls). Writes and searches go on meanwhile.

    Needs an autocommit owner connection outside any transaction (REINDEX CONCURRENTLY
    cannot run in one); one rebuild at a time (advisory lock). For the scheduler's
    maintenance, ``haste embeddings backfill`` and the AI worker's hourly sweep.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("maintain_vector_indexes needs a connection outside any transaction")
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (MAINTENANCE_LOCK,)).fetchone()[0]:
        return {"rebuilt": False, "reason": "another process is rebuilding"}
    try:
        state = conn.execute(query("vector_index_state"), {"index": CONTACTS_VECTOR_INDEX})
        vectors, built = state.fetchone()
        due = vectors >= MIN_TRAINING_ROWS and (
            built is None or vectors >= REBUILD_GROWTH * max(built, 1)
        )
        if not (force or due):
            return {"rebuilt": False, "vectors": vectors, "rows_at_build": built}
        began = time.monotonic()
        lists = lists_for(vectors)
        # ALTER takes a brief exclusive lock (a catalog change); REINDEX CONCURRENTLY then
        # builds the new index beside the old one and swaps them without blocking writes.
        conn.execute(f"ALTER INDEX {CONTACTS_VECTOR_INDEX} SET (lists = {lists})")
        conn.execute(f"REINDEX INDEX CONCURRENTLY {CONTACTS_VECTOR_INDEX}")
        conn.execute(
            query("vector_index_built"),
            {"index": CONTACTS_VECTOR_INDEX, "rows": vectors, "lists": lists},
        )
        seconds = round(time.monotonic() - began, 2)
        log.info(
            "rebuilt %s (lists %d) on %d vectors in %.1fs",
            CONTACTS_VECTOR_INDEX,
            lists,
            vectors,
            seconds,
        )
        return {"rebuilt": True, "vectors": vectors, "lists": lists, "seconds": seconds}
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MAINTENANCE_LOCK,))


def pending_count(conn: Conn) -> int:
    with system_transaction(conn) as cur:
        return int(cur.execute(query("embedding_pending_count")).fetchone()[0])


def backfill(
    conn: Conn, rt: AiRuntime, *, workspace_id: UUID | None = None, run: bool = True
) -> tuple[int, EmbedResult]:
    """Schedule every record without a current vector (one workspace or all), then drain
    unless ``run`` is False (the AI worker then does it). (scheduled, what the drain did)."""
    if workspace_id is not None:
        with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
            model = workspace_route(rt, cur).model
    else:
        model = embedding_route(rt, None).model
    params = {"workspace_id": str(workspace_id) if workspace_id else None, "model": model}
    with system_transaction(conn) as cur:
        scheduled = len(cur.execute(query("embedding_backfill_contacts"), params).fetchall())
        scheduled += len(cur.execute(query("embedding_backfill_companies"), params).fetchall())
    result = drain(conn, rt) if run else EmbedResult()
    if run and result.written:
        maintain_vector_indexes(conn)
    return scheduled, result


# --- search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    entity_type: str
    id: UUID
    score: float
    name: str
    email: str | None
    detail: str | None
    distance: float | None
    vector_rank: int | None
    text_rank: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_type": self.entity_type,
            "id": str(self.id),
            "score": round(self.score, 6),
            "name": self.name,
            "email": self.email,
            "detail": self.detail,
            "distance": None if self.distance is None else round(self.distance, 6),
            "vector_rank": self.vector_rank,
            "text_rank": self.text_rank,
        }


def search(
    conn: Conn,
    rt: AiRuntime,
    workspace_id: UUID | str,
    text: str,
    *,
    limit: int = 10,
    entities: Sequence[str] = ENTITIES,
) -> list[SearchHit]:
    """Contacts and companies of the workspace best matching ``text`` (see the module doc)."""
    with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
        route = workspace_route(rt, cur)
    vectors, _, _ = embed_texts(rt, route, [text])
    register_vector(conn)
    began = time.monotonic()
    with tenant_transaction(conn, workspace_id, dict_rows=True) as cur:
        indexed = cur.execute(
            query("vector_index_rows"), {"index": CONTACTS_VECTOR_INDEX}
        ).fetchone()
        options = dict(o.split("=", 1) for o in (indexed or {}).get("reloptions") or [])
        lists = int(options.get("lists", IVFFLAT_LISTS))
        probes = probes_for(lists, indexed["reltuples"] if indexed else 0)
        cur.execute(f"SET LOCAL ivfflat.probes = {probes}")
        cur.execute(f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}")
        # RLS filters the index scans to the workspace after the fact: keep scanning until
        # enough rows of this workspace are found (pgvector 0.8).
        cur.execute("SET LOCAL ivfflat.iterative_scan = relaxed_order")
        cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = cur.execute(
            query("search_hybrid"),
            {
                "embedding": Vector(vectors[0]),
                "text": text,
                "entities": list(entities),
                "k": max(SEARCH_CANDIDATES, limit),
                "rrf_k": RRF_K,
                "limit": limit,
            },
        ).fetchall()
        labels: dict[tuple[str, UUID], Mapping[str, Any]] = {}
        for entity in ENTITIES:
            ids = [str(r["id"]) for r in rows if r["entity_type"] == entity]
            if ids:
                for label in cur.execute(
                    query(f"search_labels_{TABLES[entity]}"), {"ids": ids}
                ).fetchall():
                    labels[(entity, label["id"])] = label
    log.debug("search %r: %d hits in %.1f ms", text, len(rows), (time.monotonic() - began) * 1000)
    hits = []
    for r in rows:
        label = labels.get((r["entity_type"], r["id"]), {})
        hits.append(
            SearchHit(
                entity_type=r["entity_type"],
                id=r["id"],
                score=float(r["score"]),
                name=label.get("name") or "",
                email=label.get("email"),
                detail=label.get("detail"),
                distance=None if r["distance"] is None else float(r["distance"]),
                vector_rank=r["vector_rank"],
                text_rank=r["text_rank"],
            )
        )
    return hits
