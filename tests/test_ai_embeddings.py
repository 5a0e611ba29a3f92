"""Embeddings of contacts and companies: one write per change, batched requests, back-fill,
races with in-flight batches, and hybrid search (vector + full text) under RLS."""

from __future__ import annotations

import math
import random
from typing import Any

import psycopg
import pytest

from engine.db import system_transaction, tenant_transaction
from tests.ai_support import module_database, runtime
from tests.fakes.crm import make_company, make_contact, make_workspace, row, rows
from tests.fakes.openai_server import FakeLLM, error, openai_server
from workers.embeddings import (
    EMBEDDING_FIELDS,
    MIN_TRAINING_ROWS,
    backfill,
    drain,
    embed_batch,
    embedding_text,
    embedding_text_changed,
    maintain_vector_indexes,
    schedule_embeddings,
    search,
)

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def db(admin_url: str, template_db: str) -> Any:
    """One database for the module: every test makes its own workspace."""
    with module_database(admin_url, template_db) as conn:
        yield conn


@pytest.fixture
def openai_fake() -> Any:
    with openai_server() as fake:
        yield fake


def schedule(db: Conn, entity: str, *ids: Any) -> int:
    """What the listener does for a change of text fields (in its own transaction)."""
    with system_transaction(db, dict_rows=True) as cur:
        return schedule_embeddings(cur, entity, ids)


def updates_of(db: Conn, table: str) -> int:
    """Rows this backend has updated in ``table`` so far (cumulative statistics)."""
    db.execute("SELECT pg_stat_force_next_flush()")
    db.execute("SELECT pg_stat_clear_snapshot()")
    return db.execute(
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = %s", (table,)
    ).fetchone()[0]


def embedding_inputs(fake: FakeLLM) -> list[list[str]]:
    return [r.json["input"] for r in fake.calls("/embeddings")]


def test_only_text_fields_need_a_new_vector() -> None:
    assert embedding_text_changed("contact", ["title", "updated_at"])
    assert embedding_text_changed("company", {"description"})
    assert not embedding_text_changed("contact", ["score", "updated_at", "embedding"])
    assert not embedding_text_changed("deal", ["title"])
    assert "embedding" not in EMBEDDING_FIELDS["contact"]
    text = embedding_text(
        "contact", {"first_name": "Ada", "last_name": "L", "title": "CTO", "city": "London"}
    )
    assert text == "Ada L\nCTO\nlocation: London"


def test_a_contact_update_produces_one_embedding_write(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    contact = make_contact(db, ws, first_name="Ada", last_name="Lovelace", title="Engineer")
    rt = runtime(openai_fake)
    db.execute("UPDATE contacts SET title = 'CTO' WHERE id = %s", (contact,))
    # A burst of events for the same record (create, update, update) is one pending row.
    for _ in range(3):
        assert schedule(db, "contact", contact) == 1
    before = updates_of(db, "contacts")

    result = drain(db, rt)

    assert (result.claimed, result.written, result.requests) == (1, 1, 1)
    assert updates_of(db, "contacts") - before == 1
    assert embedding_inputs(openai_fake) == [
        ["Ada Lovelace\nCTO\nemail: " + row(db, "contacts", contact)["email"]]
    ]
    state = rows(db, "SELECT * FROM ai_embeddings WHERE entity_id = %s", contact)[0]
    assert state["requested_at"] is None and state["model_name"] == "text-embedding-3-small"
    vector = db.execute(
        "SELECT vector_dims(embedding), round(vector_norm(embedding)::numeric, 3)"
        " FROM contacts WHERE id = %s",
        (contact,),
    ).fetchone()
    assert vector == (1536, 1)
    # Scheduled again with the same text: no request, no write.
    schedule(db, "contact", contact)
    again = drain(db, rt)
    assert (again.unchanged, again.written, again.requests) == (1, 0, 0)
    assert len(openai_fake.requests) == 1


def test_a_batch_of_500_uses_a_handful_of_requests(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO contacts (workspace_id, first_name, last_name, title, company)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(ws.id, f"First{i}", f"Last{i}", "Buyer", f"Company {i % 37}") for i in range(500)],
        )
    rt = runtime(openai_fake)

    scheduled, result = backfill(db, rt, workspace_id=ws.id)

    assert scheduled == 500
    assert result.written == 500
    assert result.requests == math.ceil(500 / rt.settings.embedding_batch) == 4
    assert [len(batch) for batch in embedding_inputs(openai_fake)] == [128, 128, 128, 116]
    missing = db.execute(
        "SELECT count(*) FROM contacts WHERE workspace_id = %s AND embedding IS NULL", (ws.id,)
    ).fetchone()[0]
    assert missing == 0
    (usage,) = rows(db, "SELECT * FROM ai_usage WHERE workspace_id = %s", ws.id)
    assert usage["tokens_used"] == result.tokens > 0 and usage["calls"] == 4
    # Nothing left to back-fill.
    assert backfill(db, rt, workspace_id=ws.id)[0] == 0


def test_a_change_during_an_in_flight_batch_stays_pending(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    contact = make_contact(db, ws, first_name="Old")
    schedule(db, "contact", contact)
    rt = runtime(openai_fake)
    provider = rt.providers["openai"]
    original = provider.embed

    def change_meanwhile(texts: Any, **kwargs: Any) -> Any:
        with psycopg.connect(db.info.dsn, autocommit=True) as other:
            other.execute("UPDATE contacts SET first_name = 'New' WHERE id = %s", (contact,))
            with system_transaction(other, dict_rows=True) as cur:
                schedule_embeddings(cur, "contact", [contact])
        return original(texts, **kwargs)

    provider.embed = change_meanwhile  # type: ignore[method-assign]
    first = embed_batch(db, rt)
    provider.embed = original  # type: ignore[method-assign]
    assert first.written == 1
    assert rows(db, "SELECT requested_at FROM ai_embeddings WHERE entity_id = %s", contact)[0][
        "requested_at"
    ]

    second = drain(db, rt)

    assert second.written == 1
    assert embedding_inputs(openai_fake)[-1][0].startswith("New")


def test_a_failed_batch_is_retried_later_and_deleted_records_are_forgotten(
    db: Conn, openai_fake: FakeLLM
) -> None:
    ws = make_workspace(db)
    kept = make_contact(db, ws, first_name="Kept")
    gone = make_contact(db, ws, first_name="Gone")
    schedule(db, "contact", kept, gone)
    db.execute("UPDATE contacts SET deleted_at = now() WHERE id = %s", (gone,))
    openai_fake.script(then=error(400, "bad input"))
    rt = runtime(openai_fake)

    result = drain(db, rt)

    assert (result.failed, result.forgotten, result.written) == (1, 1, 0)
    state = rows(db, "SELECT * FROM ai_embeddings WHERE workspace_id = %s", ws.id)
    assert [s["entity_id"] for s in state] == [kept]
    assert "bad input" in state[0]["last_error"]
    assert state[0]["requested_at"] > db.execute("SELECT clock_timestamp()").fetchone()[0]

    openai_fake.script()
    db.execute("UPDATE ai_embeddings SET requested_at = now() WHERE entity_id = %s", (kept,))
    assert drain(db, rt).written == 1


def test_without_a_key_embeddings_are_offline_and_labelled(db: Conn) -> None:
    ws = make_workspace(db)
    company = make_company(db, ws, name="Initech", industry="Software", description="TPS reports")
    schedule(db, "company", company)

    drain(db, runtime())

    (state,) = rows(db, "SELECT * FROM ai_embeddings WHERE entity_id = %s", company)
    assert (state["model_provider"], state["model_name"]) == ("offline", "offline-hashing-v1")
    assert row(db, "companies", company)["embedding"] is not None


FIRST = [
    "Olivia",
    "Liam",
    "Noah",
    "Emma",
    "Ava",
    "Sophia",
    "Mia",
    "Lucas",
    "Mason",
    "Ethan",
    "Amelia",
    "Harper",
    "Evelyn",
]
LAST = [
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Wilson",
]
TITLES = [
    "Account Executive",
    "Head of Sales",
    "CFO",
    "Support Engineer",
    "Product Manager",
    "Data Analyst",
]
COMPANIES = [
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Acme",
    "Vandelay",
]


def test_search_ranks_a_planted_near_duplicate_first(db: Conn, openai_fake: FakeLLM) -> None:
    ws = make_workspace(db)
    other = make_workspace(db, "other")
    rng = random.Random(8)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO contacts (workspace_id, first_name, last_name, title, company, city)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    ws.id,
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    rng.choice(TITLES),
                    rng.choice(COMPANIES),
                    rng.choice(["Springfield", "Shelbyville", "Ogdenville"]),
                )
                for _ in range(300)
            ],
        )
    planted = make_contact(
        db,
        ws,
        first_name="Jonathan",
        last_name="Smythe",
        title="VP Engineering",
        company="Globex Corporation",
        city="Springfield",
    )
    # The same person in another workspace must never show up.
    make_contact(
        db,
        other,
        first_name="Jonathan",
        last_name="Smythe",
        title="VP Engineering",
        company="Globex Corporation",
    )
    make_company(db, ws, name="Globex Corporation", industry="Energy")
    rt = runtime(openai_fake)
    backfill(db, rt)

    hits = search(db, rt, ws.id, "Jonathon Smyth, VP of Engineering at Globex")

    assert hits[0].id == planted and hits[0].entity_type == "contact"
    assert hits[0].vector_rank == 1
    assert {h.id for h in hits} <= {
        r["id"] for r in rows(db, "SELECT id FROM contacts WHERE workspace_id = %s", ws.id)
    } | {r["id"] for r in rows(db, "SELECT id FROM companies WHERE workspace_id = %s", ws.id)}
    assert any(h.entity_type == "company" and h.name == "Globex Corporation" for h in hits)
    # A query that only full text can match (an exact surname) still finds its record.
    assert search(db, rt, ws.id, "Smythe")[0].id == planted


def test_the_contacts_ivfflat_is_trained_on_data_and_again_when_it_has_doubled(db: Conn) -> None:
    ws = make_workspace(db)

    def add_vectors(count: int) -> None:
        db.execute(
            "INSERT INTO contacts (workspace_id, first_name, embedding)"
            " SELECT %s, 'v' || i, (SELECT array_agg(random() - 0.5)"
            " FROM generate_series(1, 1536) WHERE i > 0)::vector FROM generate_series(1, %s) i",
            (ws.id, count),
        )

    def vectors() -> int:
        return db.execute("SELECT count(*) FROM contacts WHERE embedding IS NOT NULL").fetchone()[0]

    db.execute("DELETE FROM ai_vector_indexes")
    add_vectors(MIN_TRAINING_ROWS)

    first = maintain_vector_indexes(db)
    assert first["rebuilt"] is True and first["vectors"] == vectors()
    assert maintain_vector_indexes(db)["rebuilt"] is False  # nothing grew
    add_vectors(vectors())  # doubled
    assert maintain_vector_indexes(db)["rebuilt"] is True
    built = db.execute(
        "SELECT rows_at_build FROM ai_vector_indexes WHERE index_name = 'idx_contacts_embedding'"
    ).fetchone()[0]
    assert built == vectors()
    # Nothing else indexes contacts.embedding: every write maintains one vector index.
    indexes = db.execute(
        "SELECT indexname FROM pg_indexes"
        " WHERE tablename = 'contacts' AND indexdef LIKE '%embedding%'"
    ).fetchall()
    assert indexes == [("idx_contacts_embedding",)]


def test_the_listener_hook_schedules_text_changes_and_forgets_deleted_records(db: Conn) -> None:
    from workers.embeddings import on_record_event

    ws = make_workspace(db)
    contact = make_contact(db, ws, first_name="Ada")

    def event(**fields: Any) -> None:
        base = {"workspace_id": ws.id, "entity_type": "contacts", "entity_id": contact}
        with tenant_transaction(db, ws.id, dict_rows=True) as cur:
            on_record_event(cur, {**base, **fields})

    def pending() -> list[Any]:
        return [
            r["requested_at"]
            for r in rows(
                db, "SELECT requested_at FROM ai_embeddings WHERE entity_id = %s", contact
            )
        ]

    event(operation="update", event_type="contact_updated", changed_fields=["score"])
    assert pending() == []
    event(operation="update", event_type="contact_updated", changed_fields=["title", "score"])
    assert len(pending()) == 1 and pending()[0] is not None
    event(operation="delete", event_type="contact_deleted", changed_fields=[])
    assert pending() == []
    event(operation="insert", event_type="contact_created", changed_fields=[])
    assert len(pending()) == 1
    event(entity_type="deals", operation="update", changed_fields=["title"])  # not embedded
