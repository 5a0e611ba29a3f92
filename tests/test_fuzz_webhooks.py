"""Bad-input fuzz sweep of the webhook intake, ``POST /hooks/{token}`` (issue #10, item 4).

haste web runs on a real uvicorn (tests.web_support.serving) over a migrated database with
webhook automations deployed in two workspaces. hypothesis builds requests whose every
part may be wrong: the body (random bytes, random JSON, invalid UTF-8, ``\\u0000`` and
unpaired surrogates, NaN, huge, deeply nested, chunked), the Standard Webhooks headers
(missing or garbled webhook-id, a timestamp out of range or not a number, a signature that
is garbage, made with another key, or valid over a different body), the path (unknown
token, not a token at all, another workspace's hook, a disabled one, one without a secret,
a path the router does not know) and the content type.

Properties: the answer is never a 5xx; it is a 2xx only for a request signed with a valid
secret of that hook (and then it wrote exactly one outbox event and one receipt, or was
answered from the receipt of a replayed webhook-id); a request that is correct in every
part is accepted; every refusal is ``application/problem+json`` naming its ``code`` and a
``detail``, and wrote no row: ``automation_events``, ``automation_executions`` and
``webhook_receipts`` are counted before and after each request.

``HASTE_FUZZ_SCALE=20`` multiplies the example count for a long local sweep; ``CI`` makes
the run derandomized.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import httpx
import psycopg
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from engine.automations import Workspace, deploy, set_enabled
from engine.services import Services
from engine.web.endpoints import ensure_endpoint, generate_secret
from tests.fakes.crm import Workspace as FakeWorkspace
from tests.fakes.crm import make_contact
from tests.fuzzing import fuzz
from tests.web_support import (
    MANUAL_DOC,
    Server,
    api_key,
    engine_workspace,
    module_database,
    serving,
    webhook_automation,
)

MAX_BYTES = 16_384

OPEN_DOC: dict[str, Any] = {
    "name": "open intake",
    "trigger_type": "webhook",
    "trigger_config": {},
    "actions": [{"id": "task", "type": "create_task", "params": {"title": "hello"}}],
}
DISABLED_DOC = {**OPEN_DOC, "name": "disabled intake"}
UNSIGNED_DOC = {**OPEN_DOC, "name": "no secret yet"}


# --- the server and its hooks --------------------------------------------------------------


@dataclass
class Target:
    """A path to post to, and the secret that signs for it (None: no valid one)."""

    path: str
    secret: str | None
    kind: str  # strict | open | other_workspace | disabled | no_secret | nowhere


@dataclass
class World:
    web: Server
    db: psycopg.Connection[Any]
    client: httpx.Client
    contact: str
    acme: Workspace
    targets: dict[str, Target] = field(default_factory=dict)
    manual_id: str = ""


@pytest.fixture(scope="module")
def world(admin_url: str, template_db: str, services: Services) -> Iterator[World]:
    with (
        module_database(admin_url, template_db) as url,
        serving(url, services.redis_url, HASTE_WEBHOOK_MAX_BYTES=str(MAX_BYTES)) as web,
        psycopg.connect(url, autocommit=True) as db,
        httpx.Client(base_url=web.url, timeout=20) as client,
    ):
        acme = engine_workspace(db, "acme")
        other = engine_workspace(db, "other")
        strict = webhook_automation(db, acme)  # payload_schema + record (tests.web_support)
        opened = webhook_automation(db, acme, OPEN_DOC)
        disabled = webhook_automation(db, acme, DISABLED_DOC)
        set_enabled(db, acme, DISABLED_DOC["name"], False)
        unsigned = ensure_endpoint(db, acme, str(deploy(db, acme, UNSIGNED_DOC).automation_id))
        foreign = webhook_automation(db, other, OPEN_DOC)
        manual = deploy(db, acme, MANUAL_DOC).automation_id
        contact = make_contact(db, FakeWorkspace(acme.id, uuid.uuid4()))
        w = World(web, db, client, str(contact), acme, manual_id=str(manual))
        w.targets = {
            "strict": Target(strict.path, strict.secret, "strict"),
            "open": Target(opened.path, opened.secret, "open"),
            "disabled": Target(disabled.path, disabled.secret, "disabled"),
            "no_secret": Target(unsigned.path, None, "no_secret"),
            "other_workspace": Target(foreign.path, foreign.secret, "other_workspace"),
        }
        # The other workspace's hook, signed with a secret of ours: not valid there.
        w.targets["cross_signed"] = Target(foreign.path, strict.secret, "nowhere")
        yield w


def rows(db: psycopg.Connection[Any]) -> tuple[int, int, int]:
    return db.execute(
        "SELECT (SELECT count(*) FROM automation_events),"
        " (SELECT count(*) FROM automation_executions),"
        " (SELECT count(*) FROM webhook_receipts)"
    ).fetchone()


# --- strategies ----------------------------------------------------------------------------

#: Text that any JSON parser and PostgreSQL accept (no NUL, no lone surrogate).
clean_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
)
clean_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        clean_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(clean_text, children, max_size=4)
    ),
    max_leaves=15,
)
any_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(["\x00", "a\ud800", "\udfff", "🙂", "\u202e"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)


def encode(value: Any) -> bytes:
    """JSON bytes as a sender would send them (NaN as NaN, a lone surrogate escaped)."""
    return json.dumps(value).encode()


def nest(depth: int, shape: str) -> bytes:
    if shape == "object":
        return b'{"a": ' * depth + b"1" + b"}" * depth
    if shape == "in_object":
        return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    return b"[" * depth + b"]" * depth


@dataclass
class Plan:
    """One request and what the generator knows about it."""

    method: str
    path: str
    body: bytes
    headers: dict[str, bytes]
    chunked: bool
    signed: bool  # by a valid secret of this hook, over this id, timestamp and body, in time
    pristine: bool  # every part correct: must be accepted
    notes: list[str]


@st.composite
def bodies(draw: st.DrawFn, world: World, target: Target) -> tuple[bytes, bool, list[str]]:
    """(body, is a correct payload for the target, notes)."""
    kind = draw(
        st.sampled_from(
            [
                *["payload"] * 3,
                "json",
                "bytes",
                "text",
                "invalid_utf8",
                "huge",
                "nested",
                "special",
            ]
        )
    )
    if kind == "payload":
        payload: dict[str, Any] = draw(st.dictionaries(clean_text, clean_json, max_size=3))
        if target.kind == "strict":
            payload.update({"contact_id": world.contact, "mrr": draw(st.integers(0, 10**6))})
        return encode(payload), True, ["payload"]
    if kind == "json":
        return encode(draw(any_json)), False, ["json"]
    if kind == "bytes":
        return draw(st.binary(max_size=300)), False, ["bytes"]
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass"), False, ["text"]
    if kind == "invalid_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
        return b'{"a": "' + bad + b'"}', False, [kind]
    if kind == "huge":
        size = draw(st.sampled_from([MAX_BYTES - 20, MAX_BYTES + 1, MAX_BYTES * 4]))
        return b'{"pad": "' + b"x" * size + b'"}', False, [f"huge {size}"]
    if kind == "nested":
        depth = draw(st.one_of(st.integers(1, 50), st.integers(900, 1100), st.integers(2000, 5000)))
        shape = draw(st.sampled_from(["object", "in_object", "list"]))
        return nest(depth, shape), False, [f"nested {shape} {depth}"]
    special = draw(st.sampled_from(SPECIAL_BODIES))
    return special, False, ["special " + special[:40].decode("latin-1")]


SPECIAL_BODIES = [
    b"",
    b" ",
    b"null",
    b"[]",
    b"{}",
    b'"text"',
    b'{"a": NaN}',
    b'{"a": Infinity, "b": -Infinity}',
    b'{"a": 1e999}',
    b'{"a": ' + b"9" * 5000 + b"}",
    b'{"a": "\\u0000"}',
    b'{"\\u0000": 1}',
    b'{"a": "\\ud800"}',
    b'{"\\udfff": 1}',
    b'{"a": ["x", {"b": "\\udc80"}]}',
    b'{"a": "\\ud83d\\ude00"}',
    b'{"a": 1, "a": 2}',
    b'{"contact_id": "not-a-uuid", "mrr": 1}',
    b'{"contact_id": 12, "mrr": "x"}',
    b'{"contact_id": null}',
    b'{"_webhook": "mine"}',
    b"\xef\xbb\xbf{}",
    b"\x00{\x00}",
    b"{\x00}\x00",
    b"\x00\x00\x00{",
]

header_bytes = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c <= 126 or c >= 128).strip()
)
#: Hooks that verify with their own secret (a correct request is answered 2xx or 409).
SIGNABLE = ("strict", "open", "other_workspace", "disabled")
#: Hooks where a correct request is accepted.
ACCEPTING = ("strict", "open", "other_workspace")
WHERE = [*ACCEPTING * 3, "disabled", "no_secret", "cross_signed", "nowhere"]
FAULTS = ["none", "none", "none", "id", "timestamp", "signature", "content_type", "method"]


@st.composite
def unknown_targets(draw: st.DrawFn, world: World) -> Target:
    strict_token = world.targets["strict"].path.rsplit("/", 1)[1]
    token = draw(
        st.one_of(
            st.sampled_from(
                [
                    "x" * 32,
                    "",
                    "%00",
                    "a%2Fb",
                    "..",
                    "x" * 101,
                    "x" * 5000,
                    str(uuid.uuid4()),
                    world.manual_id,
                    strict_token.upper() if strict_token.upper() != strict_token else "X",
                    strict_token + "x",
                    strict_token + "/",
                    strict_token + "%2F",
                    "a/b",
                    "%ff%fe",
                ]
            ),
            st.text(max_size=40).map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")),
        )
    )
    secret = draw(st.sampled_from([None, world.targets["strict"].secret]))
    return Target("/hooks/" + token, secret, "nowhere")


@st.composite
def plans(draw: st.DrawFn, world: World) -> Plan:
    where = draw(st.sampled_from(WHERE))
    target = draw(unknown_targets(world)) if where == "nowhere" else world.targets[where]
    notes = [where, target.path[:60]]
    body, good_payload, body_notes = draw(bodies(world, target))
    notes += body_notes
    fault = draw(st.sampled_from(FAULTS))
    notes.append(f"fault {fault}")

    now = datetime.now(UTC)
    id_header: bytes | None = f"msg_{uuid.uuid4().hex}".encode()
    id_ok = True
    if fault == "id":
        choice = draw(st.sampled_from(["missing", "empty", "long", "garbage", "tab", "fixed"]))
        notes.append(f"id {choice}")
        id_header = {
            "missing": None,
            "empty": b"",
            "long": b"m" * 256,
            "garbage": draw(header_bytes),
            "tab": b"a\tb",
            "fixed": b"fixed-id",  # one id in many requests: replays
        }[choice]
        id_ok = choice == "fixed"

    sign_at = now
    ts_header: bytes | None = str(int(now.timestamp())).encode()
    in_time = True
    if fault == "timestamp":
        choice = draw(
            st.sampled_from(
                [
                    "missing",
                    "stale",
                    "future",
                    "fraction",
                    "text",
                    "huge",
                    "nan",
                    "inf",
                    "negative",
                    "garbage",
                ]
            )
        )
        notes.append(f"timestamp {choice}")
        if choice in ("stale", "future"):
            sign_at = now + timedelta(seconds=(-1 if choice == "stale" else 1) * (6 * 60 + 5))
            ts_header = str(int(sign_at.timestamp())).encode()
        elif choice == "fraction":  # floored by the verifier: still valid
            ts_header = f"{int(now.timestamp())}.5".encode()
        else:
            ts_header = {
                "missing": None,
                "text": b"yesterday",
                "huge": b"9" * 400,
                "nan": b"nan",
                "inf": b"inf",
                "negative": b"-1",
                "garbage": draw(header_bytes),
            }[choice]
        in_time = choice == "fraction"

    secret = target.secret or generate_secret()
    signed_body = body
    sig_ok = target.kind in SIGNABLE
    sig_choice = "valid"
    if fault == "signature":
        sig_choice = draw(
            st.sampled_from(
                [
                    "missing",
                    "garbage",
                    "wrong_key",
                    "other_body",
                    "v2_only",
                    "v2_first",
                    "garbled_first",
                    "bad_base64",
                    "empty_v1",
                ]
            )
        )
        notes.append(f"signature {sig_choice}")
        sig_ok = sig_ok and sig_choice == "v2_first"
    if sig_choice == "wrong_key":
        secret = generate_secret()
    elif sig_choice == "other_body":
        signed_body = body + b" "
    id_text = (id_header or b"").decode("latin-1")
    data_text = signed_body.decode("utf-8", "replace")
    made = Webhook(secret).sign(id_text, sign_at, data_text).encode()
    signature: bytes | None = {
        "missing": None,
        "garbage": draw(header_bytes),
        "v2_only": b"v2," + made.split(b",", 1)[1],
        "v2_first": b"v2,abc " + made,  # another scheme's entry first: skipped
        "garbled_first": b"nonsense " + made,  # an entry without a comma: refused
        "bad_base64": b"v1,!!!notbase64",
        "empty_v1": b"v1,",
    }.get(sig_choice, made)

    content_type: bytes | None = b"application/json"
    if fault == "content_type":
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        notes.append(f"content-type {content_type!r}")
    method = (
        draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH"])) if fault == "method" else "POST"
    )
    headers = {
        name: value
        for name, value in (
            ("webhook-id", id_header),
            ("webhook-timestamp", ts_header),
            ("webhook-signature", signature),
            ("content-type", content_type),
        )
        if value is not None
    }
    media = (content_type or b"").split(b";")[0].strip().lower()
    json_media = media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )
    signed = method == "POST" and sig_ok and bool(id_header) and in_time and utf8(body)
    pristine = (
        signed
        and id_ok
        and good_payload
        and target.kind in ACCEPTING
        and json_media
        and len(body) <= MAX_BYTES
    )
    chunked = len(body) > 1000 and draw(st.booleans())
    return Plan(method, target.path, body, headers, chunked, signed, pristine, notes)


def utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


CONTENT_TYPES: list[bytes | None] = [
    None,
    b"",
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"APPLICATION/JSON",
    b"application/json; charset=latin-1",
    b"application/vnd.billing+json",
    b"application/jsonx",
    b"json",
    b";",
]


# --- the property --------------------------------------------------------------------------


def send(world: World, plan: Plan) -> httpx.Response:
    content: bytes | Iterator[bytes] = plan.body
    if plan.chunked:
        body = plan.body

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        content = chunks()
    return world.client.request(plan.method, plan.path, content=content, headers=plan.headers)


def check(world: World, plan: Plan) -> None:
    before = rows(world.db)
    answer = send(world, plan)
    after = rows(world.db)
    where = f"{plan.notes} -> {answer.status_code} {answer.text[:300]}"
    problem = answer.headers.get("content-type") == "application/problem+json"
    event(f"{answer.status_code} {answer.json()['code'] if problem else ''}")  # statistics

    assert answer.status_code < 500, where
    if answer.status_code == 307:
        # Starlette's redirect_slashes: /hooks/<token>/ points at /hooks/<token> (a sender
        # that follows it sends the same signed request there); nothing else redirects.
        location = httpx.URL(answer.headers["location"])
        assert plan.path.startswith("/hooks/") and location.path.startswith("/hooks/"), where
        assert unquote(plan.path).rstrip("/") == location.path, where
        assert after == before, where
        return
    if 200 <= answer.status_code < 300:
        assert answer.status_code == 202, where
        assert plan.signed, where
        body = answer.json()
        assert body["status"] == "accepted" and body["event_id"], where
        if answer.headers.get("idempotent-replayed") == "true":
            # A webhook-id accepted before: the first answer, whatever this body holds.
            assert after == before, where
        else:
            assert isinstance(json.loads(plan.body.decode("utf-8-sig")), dict), where
            assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (
                1,
                0,
                1,
            ), where
        return
    assert 400 <= answer.status_code < 500, where
    assert not plan.pristine, where
    assert problem, where
    refusal = answer.json()
    assert refusal["status"] == answer.status_code, where
    assert isinstance(refusal["code"], str) and refusal["code"], where
    assert isinstance(refusal["detail"], str) and refusal["detail"].strip(), where
    assert after == before, where


def test_every_target_is_reachable_with_a_correct_request(world: World) -> None:
    """The sweep's baseline: a correct request to each hook gets the answer its state
    says (so the fuzzed ones are refused for what they break, not for the setup)."""
    expected = {
        "strict": 202,
        "open": 202,
        "other_workspace": 202,
        "disabled": 409,
        "no_secret": 401,
        "cross_signed": 401,
    }
    for name, target in world.targets.items():
        secret = target.secret or generate_secret()
        payload = {"contact_id": world.contact, "mrr": 1} if name == "strict" else {"a": 1}
        data = encode(payload)
        msg_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, data.decode()),
            "content-type": "application/json",
        }
        answer = world.client.post(target.path, content=data, headers=headers)
        assert answer.status_code == expected[name], (name, answer.text)


@fuzz(250)
@given(data=st.data())
def test_fuzzed_webhooks_get_a_4xx_problem_and_write_nothing_never_a_5xx(
    world: World, data: st.DataObject
) -> None:
    check(world, data.draw(plans(world)))


# --- regressions: what the sweep found -------------------------------------------------------


def signed_raw(target: Target, body: bytes) -> dict[str, str]:
    assert target.secret is not None
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(target.secret).sign(msg_id, now, body.decode()),
        "content-type": "application/json",
    }


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        # Was a 500: the NUL check recursed, RecursionError (a 2-frame-per-level walk).
        (b'{"a": ' + b"[" * 600 + b"]" * 600 + b"}", "nested deeper than 100 levels"),
        # Was a 500: PostgreSQL's jsonb refuses an unpaired surrogate (DataError).
        (b'{"a": "\\ud800"}', "unpaired surrogate (\\ud800)"),
        (b'{"\\udfff": 1}', "unpaired surrogate (\\udfff)"),
        # Was accepted with the string "nan" in its place: NaN is not JSON.
        (b'{"a": NaN}', "NaN is not a JSON number"),
        # Was accepted as {}: json.loads guessed UTF-16 from the NUL bytes.
        (b"{\x00}\x00", "not valid JSON"),
    ],
)
def test_signed_bodies_that_cannot_be_stored_are_400_malformed(
    world: World, body: bytes, detail: str
) -> None:
    target = world.targets["open"]
    before = rows(world.db)

    answer = world.client.post(target.path, content=body, headers=signed_raw(target, body))

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "malformed"
    assert detail in answer.json()["detail"]
    assert rows(world.db) == before


def test_a_bom_before_the_json_is_still_accepted(world: World) -> None:
    target = world.targets["open"]
    body = b'\xef\xbb\xbf{"a": 1}'

    answer = world.client.post(target.path, content=body, headers=signed_raw(target, body))

    assert answer.status_code == 202, answer.text


def test_the_api_refuses_an_unpaired_surrogate_as_malformed_not_500(world: World) -> None:
    """The same check guards the API's JSON bodies (engine.web.responses.parse_json)."""
    key = api_key(world.db, world.acme)
    before = rows(world.db)
    body = b'{"record_id": "' + world.contact.encode() + b'", "input": {"reason": "\\udc80"}}'

    answer = world.client.post(
        "/api/v1/automations/enrich/trigger",
        content=body,
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "malformed"
    assert rows(world.db) == before
