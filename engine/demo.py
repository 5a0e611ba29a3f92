"""The demo workspace and its traffic: what ``make up`` shows a newcomer.

:func:`seed` writes a small, plausible CRM (workspace ``demo``: users, members, the Sales
pipeline, companies, contacts, deals, tags, an email account) and deploys the automations
of ``examples/demo/``. Every seeded row has a deterministic id (uuid5 of a name) and is
inserted with ``ON CONFLICT DO NOTHING``, so seeding twice, or after a partial seed,
converges on the same rows instead of duplicating them, and a deploy of an unchanged
document records no new version.

:func:`run_traffic` then makes one CRM change every ``1/rate`` seconds, each in its own
:func:`engine.db.tenant_transaction` (RLS, like any CRM client), so that the capture
triggers, the listener, the scheduler and the workers all have real work. The choice of
change is pure (:func:`plan_change`, driven by a seeded ``random.Random``); only
:func:`apply_change` touches the database. The changes are picked to make every demo
automation fire now and then: score bumps (lead scoring), tags (VIP follow-up), stage
moves (proposal email), inbound emails (AI triage), close dates pulled in (closing
reminder), billing webhooks, and occasional won/lost deals and new leads that keep the
pipeline from running dry.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from engine.db import system_transaction, tenant_transaction
from engine.logs import get_logger

log = get_logger("haste.demo")

SLUG = "demo"
WORKSPACE_NAME = "Demo Inc."
WORKSPACE_TIMEZONE = "Europe/Berlin"
#: Our own address domain: the AI triage ignores mail from it.
OWN_DOMAIN = "demo.hastecrm.example"
PIPELINE = "Sales"
STAGES: tuple[tuple[str, float], ...] = (
    ("Lead", 10),
    ("Qualified", 25),
    ("Proposal", 50),
    ("Negotiation", 75),
    ("Won", 100),
    ("Lost", 0),
)
#: Stages a deal moves through while open; Won and Lost close it.
OPEN_STAGES = ("Lead", "Qualified", "Proposal", "Negotiation")
TAGS: tuple[tuple[str, str], ...] = (
    ("vip", "#d4a017"),
    ("newsletter", "#4a90d9"),
    ("partner", "#7b61ff"),
    ("churn-risk", "#d0021b"),
    ("needs-support", "#f5a623"),
)
#: (key, first, last, role, time zone): the owners' zones differ so that the closing
#: reminder ("09:00 in the owner's time zone") shows it is per owner.
USERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("owner", "Olivia", "Owner", "owner", "Europe/Berlin"),
    ("admin", "Adam", "Admin", "admin", "Europe/London"),
    ("maria", "Maria", "Garcia", "member", "Europe/Madrid"),
    ("james", "James", "Chen", "member", "America/New_York"),
    ("priya", "Priya", "Patel", "member", "Asia/Kolkata"),
    ("sam", "Sam", "Taylor", "viewer", "UTC"),
)
#: Users that own records (viewers do not).
OWNERS = ("owner", "admin", "maria", "james", "priya")
COMPANIES: tuple[tuple[str, str, str, str], ...] = (
    ("Initech", "initech.example", "Software", "51-200"),
    ("Globex", "globex.example", "Manufacturing", "1001-5000"),
    ("Umbrella Health", "umbrella.example", "Healthcare", "501-1000"),
    ("Hooli", "hooli.example", "Internet", "5000+"),
    ("Stark Logistics", "stark.example", "Logistics", "201-500"),
    ("Wayne Foods", "waynefoods.example", "Food & Beverage", "11-50"),
    ("Acme Robotics", "acme.example", "Robotics", "51-200"),
    ("Vandelay Imports", "vandelay.example", "Retail", "1-10"),
)
FIRST_NAMES = [
    "Ava",
    "Ben",
    "Chloe",
    "Daniel",
    "Emma",
    "Felix",
    "Grace",
    "Hugo",
    "Isla",
    "Jack",
    "Kira",
    "Liam",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Will",
    "Xena",
    "Yusuf",
    "Zoe",
]
LAST_NAMES = [
    "Anders",
    "Brown",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "Gomez",
    "Hansen",
    "Ito",
    "Jones",
    "Kowalski",
    "Lopez",
    "Meyer",
    "Nakamura",
    "Olsen",
    "Petrov",
    "Rossi",
    "Silva",
    "Tanaka",
    "Weber",
]
TITLES = ("CEO", "CTO", "Head of Sales", "Operations Manager", "Engineer", "Buyer", "VP Finance")
CONTACTS_PER_COMPANY = 5
DEALS_PER_COMPANY = 2
#: (subject, body) of inbound mail, in the words the AI triage (offline too) tells apart.
INBOUND_EMAILS: tuple[tuple[str, str], ...] = (
    ("Problem with the export", "Hi, we have an issue: the export is broken and shows an error."),
    ("Help needed", "Our team needs help, the login is broken since this morning. Bug?"),
    ("Invoice question", "Could you resend last month's invoice? The payment was charged twice."),
    ("Refund request", "We were charged for two seats we removed; please refund the payment."),
    ("Pricing for 50 seats", "We are interested in a quote and pricing for the pro plan."),
    ("Demo next week?", "Could we get a demo? We are interested and want to buy before Q3."),
    ("Lunch on Friday", "Thanks for the meeting! Lunch on Friday still works for me."),
)
#: How often each kind of change happens (weights, not percentages).
CHANGE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("score", 30),
    ("stage", 16),
    ("email", 14),
    ("tag", 12),
    ("close_date", 8),
    ("webhook", 8),
    ("new_contact", 7),
    ("close_deal", 5),
)
#: Bounds of ``haste demo traffic --rate`` (changes per second): a demo, not a load test.
MAX_RATE = 20.0
DEFAULT_RATE = 0.5
DEMO_DIR = Path(__file__).resolve().parent.parent / "examples" / "demo"

_NS = uuid.UUID("6b1e3f5c-1d1e-4b8e-9a55-2f0d3c9e7a10")


def demo_id(*parts: object) -> UUID:
    """The id of a seeded row: stable across runs, so seeding is an upsert by id."""
    return uuid.uuid5(_NS, "/".join(str(p) for p in parts))


# --- seed -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedResult:
    workspace_id: UUID
    created: bool
    contacts: int
    deals: int
    automations: list[tuple[str, int, bool]]  # (name, version, changed)


def demo_documents(directory: Path = DEMO_DIR) -> list[dict[str, Any]]:
    """The demo automations, in file-name order (deterministic deploy order)."""
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def _insert(cur: psycopg.Cursor[Any], table: str, **cols: Any) -> None:
    values = [Jsonb(v) if isinstance(v, dict) else v for v in cols.values()]
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(sql.Placeholder() * len(cols)),
        ),
        values,
    )


def _seed_rows(cur: psycopg.Cursor[Any], today: date) -> tuple[int, int]:
    """The CRM rows; a fixed RNG so the same ids always get the same content."""
    rng = random.Random(42)
    ws = demo_id("workspace")
    _insert(
        cur,
        "workspaces",
        id=ws,
        name=WORKSPACE_NAME,
        slug=SLUG,
        plan="professional",
        settings={"timezone": WORKSPACE_TIMEZONE},
    )
    for i, (key, first, last, role, tz) in enumerate(USERS):
        user = demo_id("user", key)
        _insert(
            cur,
            "users",
            id=user,
            email=f"{key}@{OWN_DOMAIN}",
            first_name=first,
            last_name=last,
            timezone=tz,
            email_verified=True,
        )
        _insert(
            cur,
            "workspace_members",
            id=demo_id("member", key),
            workspace_id=ws,
            user_id=user,
            role=role,
            status="active",
            joined_at=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=i),
        )
    owner = demo_id("user", "owner")
    _insert(
        cur,
        "email_accounts",
        id=demo_id("email_account"),
        workspace_id=ws,
        user_id=owner,
        email=f"sales@{OWN_DOMAIN}",
        display_name="Demo Inc. Sales",
        provider="smtp",
        is_primary=True,
        sync_enabled=False,
    )
    for name, color in TAGS:
        _insert(cur, "tags", id=demo_id("tag", name), workspace_id=ws, name=name, color=color)
    pipeline = demo_id("pipeline", PIPELINE)
    _insert(
        cur,
        "pipelines",
        id=pipeline,
        workspace_id=ws,
        name=PIPELINE,
        type="sales",
        created_by=owner,
    )
    for i, (stage, probability) in enumerate(STAGES):
        _insert(
            cur,
            "pipeline_stages",
            id=demo_id("stage", stage),
            pipeline_id=pipeline,
            name=stage,
            order_index=i,
            probability=probability,
        )
    contacts = deals = 0
    for c_index, (company, domain, industry, size) in enumerate(COMPANIES):
        company_id = demo_id("company", company)
        company_owner = demo_id("user", OWNERS[c_index % len(OWNERS)])
        _insert(
            cur,
            "companies",
            id=company_id,
            workspace_id=ws,
            name=company,
            domain=domain,
            website=f"https://{domain}",
            industry=industry,
            company_size=size,
            owner_id=company_owner,
            created_by=owner,
        )
        people: list[UUID] = []
        for p in range(CONTACTS_PER_COMPANY):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            contact_id = demo_id("contact", company, p)
            _insert(
                cur,
                "contacts",
                id=contact_id,
                workspace_id=ws,
                email=f"{first.lower()}.{last.lower()}@{domain}",
                first_name=first,
                last_name=last,
                company=company,
                title=rng.choice(TITLES),
                source=rng.choice(("website", "import", "linkedin", "manual")),
                score=rng.randrange(20, 76),
                lifecycle_stage="lead",
                owner_id=company_owner if p % 2 == 0 else None,
                created_by=owner,
            )
            _insert(
                cur,
                "company_contacts",
                company_id=company_id,
                contact_id=contact_id,
                role=None,
                is_primary=p == 0,
            )
            people.append(contact_id)
            contacts += 1
        if c_index % 3 == 0:
            _insert(cur, "contact_tags", contact_id=people[0], tag_id=demo_id("tag", "newsletter"))
        for d in range(DEALS_PER_COMPANY):
            stage = OPEN_STAGES[(c_index + d) % len(OPEN_STAGES)]
            _insert(
                cur,
                "deals",
                id=demo_id("deal", company, d),
                workspace_id=ws,
                title=f"{company} — {('Platform licence', 'Expansion')[d]}",
                value=rng.randrange(5, 120) * 1000,
                currency="EUR",
                pipeline_id=pipeline,
                stage_id=demo_id("stage", stage),
                contact_id=people[d],
                company_id=company_id,
                owner_id=company_owner,
                probability=dict(STAGES)[stage],
                expected_close_date=today + timedelta(days=rng.randrange(7, 75)),
                created_by=owner,
            )
            deals += 1
    return contacts, deals


def seed(conn: psycopg.Connection[Any], *, today: date | None = None) -> SeedResult:
    """Create (or complete) the demo workspace, then deploy the demo automations.

    ``conn`` is an owner connection: a workspace and its users are not tenant rows, so the
    seed writes as the CRM's provisioning would, not under RLS.
    """
    from engine.automations import deploy, find_workspace

    with system_transaction(conn) as cur:
        existed = (
            cur.execute("SELECT 1 FROM workspaces WHERE slug = %s", (SLUG,)).fetchone() is not None
        )
        contacts, deals = _seed_rows(cur, today or datetime.now(UTC).date())
    workspace = find_workspace(conn, SLUG)
    owner = demo_id("user", "owner")
    deployed = []
    for doc in demo_documents():
        result = deploy(conn, workspace, doc, user_id=owner, deployed_by_name="haste demo seed")
        deployed.append((result.name, result.version, result.changed))
    return SeedResult(workspace.id, not existed, contacts, deals, deployed)


# --- traffic: what to change (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One CRM change the traffic generator made (``kind`` is a CHANGE_WEIGHTS name)."""

    kind: str
    summary: str
    record: str | None = None  # "contacts/<id>", for `haste why --record`


def plan_change(rng: random.Random) -> str:
    """The kind of the next change, by weight."""
    kinds, weights = zip(*CHANGE_WEIGHTS, strict=True)
    return rng.choices(kinds, weights=weights)[0]


def bumped_score(score: int, rng: random.Random) -> int:
    """Engagement adds a few points; a big jump is rarer. Capped at 100 like the CRM's UI."""
    return min(100, score + rng.choice((3, 5, 8, 10, 12, 15, 20)))


def next_stage(current: str) -> str | None:
    """The stage after ``current`` while open (None from Negotiation: that one closes)."""
    if current not in OPEN_STAGES:
        return None
    i = OPEN_STAGES.index(current)
    return OPEN_STAGES[i + 1] if i + 1 < len(OPEN_STAGES) else None


def reminder_close_date(now: datetime, tz: str) -> date:
    """A close date whose reminder (3 days before, 09:00 owner time) is due at the most
    recent 09:00 in ``tz``: within the demo reminder's 24 h catch-up window, so the
    scheduler fires it on its next tick instead of on some morning days away."""
    local = now.astimezone(ZoneInfo(tz))
    today = local.date() if local.time() >= time(9) else local.date() - timedelta(days=1)
    return today + timedelta(days=3)


def inbound_email(rng: random.Random) -> tuple[str, str]:
    return rng.choice(INBOUND_EMAILS)


# --- traffic: making the change (I/O) ---------------------------------------------------------

Cursor = psycopg.Cursor[Any]


def _pick(cur: Cursor, query: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    """One random row (tables are demo-sized; ORDER BY random() is fine here)."""
    return cur.execute(query + " ORDER BY random() LIMIT 1", params).fetchone()


def _user_zone(user_id: Any) -> str:
    zones = {demo_id("user", key): tz for key, *_, tz in USERS}
    return zones.get(user_id, WORKSPACE_TIMEZONE)


def _change_score(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    row = _pick(
        cur,
        "SELECT id, first_name, score FROM contacts WHERE deleted_at IS NULL AND score < 100",
    )
    if row is None:
        return None
    score = bumped_score(row["score"] or 0, rng)
    cur.execute("UPDATE contacts SET score = %s WHERE id = %s", (score, row["id"]))
    return Change(
        "score", f"{row['first_name']}'s score {row['score']} -> {score}", f"contacts/{row['id']}"
    )


def _change_tag(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    tag = rng.choices(("vip", "newsletter", "partner", "churn-risk"), weights=(5, 3, 2, 2))[0]
    row = _pick(
        cur,
        "SELECT c.id, c.first_name FROM contacts c WHERE c.deleted_at IS NULL AND NOT EXISTS"
        " (SELECT 1 FROM contact_tags ct JOIN tags t ON t.id = ct.tag_id"
        "  WHERE ct.contact_id = c.id AND t.name = %s)",
        (tag,),
    )
    if row is None:
        return None
    cur.execute(
        "INSERT INTO contact_tags (contact_id, tag_id)"
        " SELECT %s, id FROM tags WHERE name = %s ON CONFLICT DO NOTHING",
        (row["id"], tag),
    )
    return Change("tag", f"{row['first_name']} tagged {tag}", f"contacts/{row['id']}")


_OPEN_DEAL = (
    "SELECT d.id, d.title, d.owner_id, s.name AS stage FROM deals d"
    " JOIN pipeline_stages s ON s.id = d.stage_id"
    " WHERE d.deleted_at IS NULL AND d.status = 'open'"
)


def _set_stage(cur: Cursor, deal_id: Any, stage: str, **extra: Any) -> None:
    sets = [sql.SQL("stage_id = %(stage_id)s, probability = %(p)s, stage_entered_at = now()")]
    sets += [sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in extra]
    cur.execute(
        sql.SQL("UPDATE deals SET {} WHERE id = %(id)s").format(sql.SQL(", ").join(sets)),
        {"stage_id": demo_id("stage", stage), "p": dict(STAGES)[stage], "id": deal_id, **extra},
    )


def _change_stage(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    row = _pick(cur, _OPEN_DEAL + " AND s.name <> 'Negotiation'")
    if row is None:
        return _new_deal(cur, rng, now)
    stage = next_stage(row["stage"])
    if stage is None:
        return None
    _set_stage(cur, row["id"], stage)
    return Change("stage", f"{row['title']}: {row['stage']} -> {stage}", f"deals/{row['id']}")


def _new_deal(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    contact = _pick(
        cur,
        "SELECT c.id, c.company, cc.company_id FROM contacts c"
        " LEFT JOIN company_contacts cc ON cc.contact_id = c.id WHERE c.deleted_at IS NULL",
    )
    if contact is None:
        return None
    owner = demo_id("user", rng.choice(OWNERS))
    deal_id = uuid.uuid4()
    title = (
        f"{contact['company'] or 'New'} — {rng.choice(('Pilot', 'Renewal', 'Add-on', 'Upgrade'))}"
    )
    cur.execute(
        "INSERT INTO deals (id, workspace_id, title, value, currency, pipeline_id, stage_id,"
        " contact_id, company_id, owner_id, probability, expected_close_date, created_by)"
        " VALUES (%s, current_setting('app.workspace_id')::uuid, %s, %s, 'EUR', %s, %s, %s, %s,"
        " %s, %s, %s, %s)",
        (
            deal_id,
            title,
            rng.randrange(5, 120) * 1000,
            demo_id("pipeline", PIPELINE),
            demo_id("stage", "Lead"),
            contact["id"],
            contact["company_id"],
            owner,
            dict(STAGES)["Lead"],
            now.date() + timedelta(days=rng.randrange(14, 90)),
            owner,
        ),
    )
    return Change("new_deal", f"new deal {title}", f"deals/{deal_id}")


def _change_close_deal(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    row = _pick(cur, _OPEN_DEAL + " AND s.name = 'Negotiation'")
    if row is None:
        return _change_stage(cur, rng, now)
    won = rng.random() < 0.6
    if won:
        _set_stage(
            cur, row["id"], "Won", status="won", actual_close_date=now.date(), won_reason="Signed"
        )
    else:
        reason = rng.choice(("Budget cut", "Went with a competitor", "No decision"))
        _set_stage(
            cur, row["id"], "Lost", status="lost", actual_close_date=now.date(), lost_reason=reason
        )
    _new_deal(cur, rng, now)  # keep the pipeline from running dry
    outcome = "won" if won else "lost"
    return Change("close_deal", f"{row['title']} {outcome}", f"deals/{row['id']}")


def _change_close_date(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    row = _pick(cur, _OPEN_DEAL)
    if row is None:
        return None
    when = reminder_close_date(now, _user_zone(row["owner_id"]))
    cur.execute(
        "UPDATE deals SET expected_close_date = %s WHERE id = %s AND expected_close_date"
        " IS DISTINCT FROM %s",
        (when, row["id"], when),
    )
    return Change("close_date", f"{row['title']} expected to close on {when}", f"deals/{row['id']}")


def _change_email(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    contact = _pick(
        cur,
        "SELECT id, email, first_name, last_name FROM contacts"
        " WHERE deleted_at IS NULL AND email IS NOT NULL",
    )
    if contact is None:
        return None
    subject, body = inbound_email(rng)
    message_id = f"<{uuid.uuid4()}@mail.{contact['email'].split('@')[-1]}>"
    cur.execute(
        "INSERT INTO emails (workspace_id, message_id, subject, from_email, from_name, to_emails,"
        " body_text, snippet, folder, email_account_id, contact_id, received_at)"
        " VALUES (current_setting('app.workspace_id')::uuid, %s, %s, %s, %s, %s, %s, %s, 'inbox',"
        " %s, %s, %s)",
        (
            message_id,
            subject,
            contact["email"],
            f"{contact['first_name']} {contact['last_name']}",
            [f"sales@{OWN_DOMAIN}"],
            body,
            body[:100],
            demo_id("email_account"),
            contact["id"],
            now,
        ),
    )
    return Change("email", f"email from {contact['email']}: {subject}", f"contacts/{contact['id']}")


def _change_new_contact(cur: Cursor, rng: random.Random, now: datetime) -> Change | None:
    company, domain, *_ = rng.choice(COMPANIES)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    contact_id = uuid.uuid4()
    cur.execute(
        "INSERT INTO contacts (id, workspace_id, email, first_name, last_name, company, title,"
        " source, score, lifecycle_stage)"
        " VALUES (%s, current_setting('app.workspace_id')::uuid, %s, %s, %s, %s, %s, 'website',"
        " %s, 'lead')",
        (
            contact_id,
            f"{first.lower()}.{last.lower()}.{contact_id.hex[:4]}@{domain}",
            first,
            last,
            company,
            rng.choice(TITLES),
            rng.randrange(40, 76),
        ),
    )
    cur.execute(
        "INSERT INTO company_contacts (company_id, contact_id) VALUES (%s, %s)",
        (demo_id("company", company), contact_id),
    )
    return Change("new_contact", f"new lead {first} {last} at {company}", f"contacts/{contact_id}")


_CRM_CHANGES: dict[str, Callable[[Cursor, random.Random, datetime], Change | None]] = {
    "score": _change_score,
    "tag": _change_tag,
    "stage": _change_stage,
    "close_deal": _change_close_deal,
    "close_date": _change_close_date,
    "email": _change_email,
    "new_contact": _change_new_contact,
}


def _webhook(
    conn: psycopg.Connection[Any], workspace_id: UUID, rng: random.Random
) -> Change | None:
    """What the web receiver writes for a verified billing webhook (the outbox row is
    written as the owner: tenants may read the outbox, never write it)."""
    from triggers.emit import emit_event

    with system_transaction(conn, dict_rows=True) as cur:
        automation = cur.execute(
            "SELECT id FROM automations WHERE workspace_id = %s AND trigger_type = 'webhook'"
            " AND enabled AND deleted_at IS NULL ORDER BY name LIMIT 1",
            (workspace_id,),
        ).fetchone()
        contact = _pick(
            cur,
            "SELECT id FROM contacts WHERE workspace_id = %s AND deleted_at IS NULL",
            (workspace_id,),
        )
        if automation is None or contact is None:
            return None
        mrr = rng.choice((0, 49, 99, 299, 990))
        plan = {0: "free", 49: "starter", 99: "starter", 299: "pro", 990: "enterprise"}[mrr]
        payload = {"contact_id": str(contact["id"]), "mrr": mrr, "plan": plan}
        emit_event(
            cur,
            workspace_id=workspace_id,
            event_type="webhook",
            automation_id=automation["id"],
            entity_type="contact",
            entity_id=contact["id"],
            payload={**payload, "_webhook": {"id": f"msg_demo_{uuid.uuid4().hex}"}},
        )
    return Change("webhook", f"billing webhook: MRR {mrr}", f"contacts/{contact['id']}")


def apply_change(
    conn: psycopg.Connection[Any],
    workspace_id: UUID,
    kind: str,
    rng: random.Random,
    now: datetime | None = None,
) -> Change | None:
    """Make one change of ``kind`` in its own transaction; None if nothing fitted."""
    now = now or datetime.now(UTC)
    if kind == "webhook":
        return _webhook(conn, workspace_id, rng)
    actor = demo_id("user", rng.choice(OWNERS))
    with tenant_transaction(conn, workspace_id, actor, dict_rows=True) as cur:
        return _CRM_CHANGES[kind](cur, rng, now)


def workspace_id_of(conn: psycopg.Connection[Any]) -> UUID | None:
    with system_transaction(conn) as cur:
        row = cur.execute("SELECT id FROM workspaces WHERE slug = %s", (SLUG,)).fetchone()
    return row[0] if row else None


def run_traffic(
    conninfo: str,
    *,
    rate: float = DEFAULT_RATE,
    stop: threading.Event | None = None,
    steps: int | None = None,
    rng: random.Random | None = None,
    on_change: Callable[[Change], None] | None = None,
) -> dict[str, int]:
    """Make changes at ``rate`` per second until ``stop`` is set (or ``steps`` are made).

    Each change commits on its own, so stopping between two never leaves half a change;
    a failed change is logged and the loop goes on (a demo should not die of one bad
    pick). Returns the count of changes made per kind.
    """
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE}] changes per second, not {rate}")
    stop = stop or threading.Event()
    rng = rng or random.Random()
    counts: dict[str, int] = {}
    interval = 1.0 / rate
    with psycopg.connect(conninfo, autocommit=True) as conn:
        workspace_id = workspace_id_of(conn)
        if workspace_id is None:
            raise LookupError(f"no workspace {SLUG!r}: run `haste demo seed` first")
        made = 0
        while not stop.is_set() and (steps is None or made < steps):
            kind = plan_change(rng)
            try:
                change = apply_change(conn, workspace_id, kind, rng)
            except psycopg.Error as exc:
                log.warning("demo change failed", kind=kind, error=str(exc))
                change = None
            made += 1
            if change is not None:
                counts[change.kind] = counts.get(change.kind, 0) + 1
                log.info(
                    "demo change", kind=change.kind, summary=change.summary, record=change.record
                )
                if on_change is not None:
                    on_change(change)
            if steps is None or made < steps:
                stop.wait(interval * rng.uniform(0.5, 1.5))
    return counts


def counts_by_status(conn: psycopg.Connection[Any]) -> Mapping[str, int]:
    """Executions of the demo workspace per status (for the CLI and the tests)."""
    with system_transaction(conn) as cur:
        rows = cur.execute(
            "SELECT e.status, count(*) FROM automation_executions e"
            " JOIN workspaces w ON w.id = e.workspace_id WHERE w.slug = %s GROUP BY 1 ORDER BY 1",
            (SLUG,),
        ).fetchall()
    return {status: n for status, n in rows}
