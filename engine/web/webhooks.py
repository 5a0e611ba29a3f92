"""Webhook intake: ``POST /hooks/{token}`` → one outbox event per webhook-id, answered 202.

A request goes through these gates in order; the first that refuses answers, writes
nothing, and counts its reason (``haste_webhook_rejects_total{reason}``):

    declared or read body > HASTE_WEBHOOK_MAX_BYTES        413 too_large (body not read on)
    token unknown, automation deleted or not a webhook     404 unknown_hook
    Content-Type not application/json (or +json)           415 unsupported_media_type
    webhook-id / -timestamp / -signature header missing    401 missing_signature
    webhook-id longer than 255 or not printable, not UTF-8  400 malformed
    timestamp outside ±5 minutes                           401 stale_timestamp
    no valid secret of the endpoint made the signature     401 bad_signature
    ---- authenticated from here on: a webhook-id seen before is answered as the first time
    automation disabled                                    409 disabled
    body not a JSON object, holds \\u0000, an unpaired     400 malformed
      surrogate or NaN, or nests deeper than 100 levels
    payload_schema of the trigger config not satisfied     422 invalid_payload (+ pointers)
    trigger_config.record path missing or not a uuid       422 invalid_payload (+ pointer)
    ---- accepted: in ONE transaction, emit_event (the outbox row) + the receipt of the
         webhook-id; commit; 202 {"status": "accepted", "event_id", "webhook_id"}

Signatures are checked by the ``standardwebhooks`` library, once per valid secret of the
endpoint (newest first), which is how rotation works: during the overlap both the old and
the new secret verify. Verification comes before anything that depends on the stored
state (disabled, replays), so an unauthenticated caller learns only that the hook exists.

Idempotency: the receipt's primary key (endpoint, webhook-id) is the guarantee. The
second delivery of an id either finds nothing special on the way and loses the INSERT
race (its transaction, event included, rolls back and it answers with the stored first
answer), or is refused by a gate after verification, which looks the receipt up before
answering: a sender's retry of an accepted delivery always gets the first 202 back (with
``Idempotent-Replayed: true``), even if the automation was disabled in between. Refusals
are not stored, so a retry after a 409 or 422 is judged again.

The outbox event: ``event_type`` webhook, aimed at the automation; ``payload`` is the JSON
body plus ``_webhook: {id, timestamp}`` (that key is reserved); the record named by
``trigger_config.record`` (path into the payload, entity type) becomes the event's entity.

Look-ups of an endpoint (automation state, valid secrets) are cached for TARGET_TTL (1 s)
per process; a refusal decided on a cached state is re-judged on a fresh read, so only
revocations and disables wait out the second (see TARGET_TTL).

Shutdown: the intake runs in a worker thread and commits before answering, so a request
cut off by SIGTERM either committed (its retry is answered from the receipt) or did not
(its retry is accepted then): nothing is lost or doubled either way.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from jsonschema import Draft202012Validator, SchemaError
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import Response

from engine import metrics
from engine.db import system_transaction
from engine.logs import get_logger
from engine.queries import query
from engine.web.responses import dumps, is_json_media_type, pointer, unstorable
from engine.web.threads import blocking
from triggers.emit import emit_event

log = get_logger("haste.web.webhooks")

#: Longest webhook-id kept (the receipts column); Standard Webhooks ids are short.
MAX_WEBHOOK_ID = 255
#: Longest token looked up; real ones are 32 characters.
MAX_TOKEN = 100
#: Compiled payload schemas kept per process (key: automation id + its updated_at).
VALIDATOR_CACHE_SIZE = 1024
#: Seconds to wait for a pooled connection before answering 503.
POOL_WAIT = 5.0
#: Seconds an endpoint look-up (automation state, valid secrets) is reused. A request
#: refused with a cached state (RECHECKED reasons) is judged again on a fresh read, so a
#: new secret or a re-enabled automation works at once; a revoked secret or a disable
#: takes effect within this time (a webhook accepted meanwhile meets the listener's
#: "disabled" decision).
TARGET_TTL = 1.0
TARGET_CACHE_SIZE = 10_000
RECHECKED = frozenset({"bad_signature", "disabled", "invalid_payload"})
#: Entity types a trigger_config.record may name (the automation schema's enum).
RECORD_ENTITIES = frozenset({"contact", "company", "deal", "email", "task", "note"})


@dataclass(frozen=True)
class Answer:
    """What the intake says to one request."""

    status: int
    body: Mapping[str, Any]
    outcome: str  # accepted | replayed | rejected
    reason: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    automation_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None

    def response(self) -> Response:
        media = "application/problem+json" if self.outcome == "rejected" else "application/json"
        return Response(
            dumps(dict(self.body)),
            status_code=self.status,
            headers=dict(self.headers),
            media_type=media,
        )


class Rejected(Exception):
    """A gate refused the request; ``reason`` is one of ``metrics.WEBHOOK_REJECT_REASONS``."""

    def __init__(self, reason: str, detail: str, *, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.errors = errors or []

    def answer(self, target: Target | None = None) -> Answer:
        status = metrics.WEBHOOK_REJECT_REASONS[self.reason]
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.reason.replace("_", " "),
            "status": status,
            "code": self.reason,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return Answer(
            status,
            body,
            "rejected",
            self.reason,
            automation_id=target.automation_id if target else None,
            workspace_id=target.workspace_id if target else None,
        )


@dataclass(frozen=True)
class Target:
    """The endpoint a token names, with its automation's state and valid secrets."""

    endpoint_id: uuid.UUID
    workspace_id: uuid.UUID
    automation_id: uuid.UUID
    enabled: bool
    trigger_config: Mapping[str, Any]
    version_key: str
    secrets: tuple[str, ...]


class WebhookIntake:
    """The gates above, over a connection pool; :meth:`handle` runs in a worker thread."""

    def __init__(
        self, pool: ConnectionPool, *, max_bytes: int, target_ttl: float = TARGET_TTL
    ) -> None:
        self.pool = pool
        self.max_bytes = max_bytes
        self.target_ttl = target_ttl
        self._validators: dict[tuple[uuid.UUID, str], Draft202012Validator | None] = {}
        self._targets: dict[str, tuple[float, Target]] = {}
        self._lock = threading.Lock()

    # --- the gates ---------------------------------------------------------------------

    def handle(self, token: str, headers: Mapping[str, str], body: bytes) -> Answer:
        target: Target | None = None
        try:
            if len(token) > MAX_TOKEN or "\x00" in token:
                raise Rejected("unknown_hook", "no webhook at this address")
            with self.pool.connection(timeout=POOL_WAIT) as conn:
                target, cached = self._target(conn, token)
                try:
                    return self._gates(conn, target, headers, body)
                except Rejected as rejected:
                    if not cached or rejected.reason not in RECHECKED:
                        raise
                # A secret created or an automation enabled within the cache's lifetime:
                # judge again on the stored state before refusing.
                target, _ = self._target(conn, token, fresh=True)
                return self._gates(conn, target, headers, body)
        except Rejected as rejected:
            return rejected.answer(target)

    def _gates(
        self,
        conn: psycopg.Connection[Any],
        target: Target,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        webhook_id, timestamp = self._verify(target, headers, body)
        try:
            payload, entity = self._payload(target, body, webhook_id, timestamp)
        except Rejected:
            stored = self._stored(conn, target, webhook_id)
            if stored is not None:
                return stored
            raise
        return self._accept(conn, target, webhook_id, payload, entity)

    def _target(
        self, conn: psycopg.Connection[Any], token: str, *, fresh: bool = False
    ) -> tuple[Target, bool]:
        """The endpoint of ``token`` and whether it came from the cache (positive look-ups
        are kept ``target_ttl`` seconds: one statement less per request under load)."""
        now = time.monotonic()
        if not fresh:
            with self._lock:
                hit = self._targets.get(token)
            if hit is not None and now - hit[0] < self.target_ttl:
                return hit[1], True
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("webhook_endpoint_intake"), {"token": token}).fetchone()
        if row is None or row["deleted"] or row["trigger_type"] != "webhook":
            with self._lock:
                self._targets.pop(token, None)
            raise Rejected("unknown_hook", "no webhook at this address")
        target = Target(
            row["id"],
            row["workspace_id"],
            row["automation_id"],
            row["enabled"],
            row["trigger_config"] or {},
            f"{row['current_version']}:{row['updated_at'].timestamp()}",
            tuple(row["secrets"] or ()),
        )
        with self._lock:
            if len(self._targets) >= TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[token] = (now, target)
        return target, False

    def _verify(self, target: Target, headers: Mapping[str, str], body: bytes) -> tuple[str, int]:
        if not is_json_media_type(headers.get("content-type")):
            raise Rejected("unsupported_media_type", "send the body as application/json")
        signed = {
            name: headers.get(name) or ""
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        missing = [name for name, value in signed.items() if not value]
        if missing:
            raise Rejected("missing_signature", f"missing header(s): {', '.join(missing)}")
        webhook_id = signed["webhook-id"]
        if len(webhook_id) > MAX_WEBHOOK_ID or not webhook_id.isprintable():
            raise Rejected(
                "malformed", f"webhook-id must be at most {MAX_WEBHOOK_ID} printable characters"
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("malformed", "the body is not UTF-8") from None
        if not target.secrets:
            raise Rejected(
                "bad_signature",
                "this webhook has no signing secret yet (haste webhook secret create)",
            )
        for secret in target.secrets:
            try:
                Webhook(secret).verify(text, signed, json_parse=False)
            except WebhookVerificationError as exc:
                message = str(exc)
                if "too old" in message or "too new" in message:
                    raise Rejected(
                        "stale_timestamp", "webhook-timestamp is more than 5 minutes off"
                    ) from None
                if "Invalid Signature Headers" in message:
                    raise Rejected("stale_timestamp", "webhook-timestamp is not a number") from None
                continue  # no match with this secret: try the next one
            except ValueError:  # a malformed signature entry (no comma, bad base64)
                continue
            return webhook_id, int(float(signed["webhook-timestamp"]))
        raise Rejected("bad_signature", "the signature matches no secret of this webhook")

    def _payload(
        self, target: Target, body: bytes, webhook_id: str, timestamp: int
    ) -> tuple[dict[str, Any], tuple[str, uuid.UUID] | None]:
        if not target.enabled:
            raise Rejected("disabled", "the automation of this webhook is disabled")
        try:
            # The UTF-8 text the signature was checked on (json.loads of bytes would guess
            # UTF-16 or UTF-32 from NUL bytes); a leading BOM is ignored.
            value = json.loads(body.decode("utf-8-sig"))
        except (ValueError, RecursionError) as exc:
            raise Rejected("malformed", f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise Rejected("malformed", "the body must be a JSON object")
        if (reason := unstorable(value)) is not None:
            raise Rejected("malformed", reason)
        validator = self._validator(target)
        if validator is not None:
            problems = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            if problems:
                raise Rejected(
                    "invalid_payload",
                    "the body does not match the automation's payload_schema",
                    errors=[
                        {"pointer": pointer(list(e.absolute_path)), "detail": e.message}
                        for e in problems[:20]
                    ],
                )
        entity = record_of(target.trigger_config, value)
        payload = {**value, "_webhook": {"id": webhook_id, "timestamp": timestamp}}
        return payload, entity

    def _validator(self, target: Target) -> Draft202012Validator | None:
        key = (target.automation_id, target.version_key)
        with self._lock:
            if key in self._validators:
                return self._validators[key]
        schema = target.trigger_config.get("payload_schema")
        validator = None
        if schema is not None:
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                raise Rejected(
                    "invalid_payload", f"the automation's payload_schema is invalid: {exc.message}"
                ) from None
            validator = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        with self._lock:
            if len(self._validators) >= VALIDATOR_CACHE_SIZE:
                self._validators.clear()
            self._validators[key] = validator
        return validator

    # --- storage -------------------------------------------------------------------------

    def _stored(
        self, conn: psycopg.Connection[Any], target: Target, webhook_id: str
    ) -> Answer | None:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                query("webhook_receipt_get"),
                {"endpoint_id": target.endpoint_id, "webhook_id": webhook_id},
            ).fetchone()
        if row is None:
            return None
        return Answer(
            row["status_code"],
            row["response"],
            "replayed",
            headers={"Idempotent-Replayed": "true"},
            automation_id=target.automation_id,
            workspace_id=target.workspace_id,
        )

    def _accept(
        self,
        conn: psycopg.Connection[Any],
        target: Target,
        webhook_id: str,
        payload: dict[str, Any],
        entity: tuple[str, uuid.UUID] | None,
    ) -> Answer:
        try:
            with system_transaction(conn) as cur:
                event_id = emit_event(
                    cur,
                    workspace_id=target.workspace_id,
                    event_type="webhook",
                    automation_id=target.automation_id,
                    entity_type=entity[0] if entity else None,
                    entity_id=entity[1] if entity else None,
                    payload=payload,
                )
                body = {"status": "accepted", "event_id": event_id, "webhook_id": webhook_id}
                stored = cur.execute(
                    query("webhook_receipt_insert"),
                    {
                        "endpoint_id": target.endpoint_id,
                        "webhook_id": webhook_id,
                        "workspace_id": target.workspace_id,
                        "event_id": event_id,
                        "status_code": 202,
                        "response": Jsonb(body),
                    },
                ).fetchone()
                if stored is None:
                    raise _Duplicate
        except _Duplicate:
            answer = self._stored(conn, target, webhook_id)
            assert answer is not None  # the row that won the race has committed
            return answer
        metrics.EVENTS_EMITTED.labels("webhook").inc()
        return Answer(
            202,
            body,
            "accepted",
            automation_id=target.automation_id,
            workspace_id=target.workspace_id,
        )


class _Duplicate(Exception):
    """Another request stored this webhook-id first: roll back, answer with its answer."""


def record_of(
    config: Mapping[str, Any], payload: Mapping[str, Any]
) -> tuple[str, uuid.UUID] | None:
    """The (entity type, id) that ``trigger_config.record`` names in the payload, if any."""
    spec = config.get("record")
    if not spec:
        return None
    entity = spec.get("entity_type")
    path = str(spec.get("path") or "").split(".")[1:]  # drop "trigger"
    if entity not in RECORD_ENTITIES or not path:
        return None
    value: Any = payload
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise Rejected(
                "invalid_payload",
                f"the record id is missing: nothing at {pointer(path)}",
                errors=[{"pointer": pointer(path), "detail": "required: the record's id"}],
            )
    try:
        return entity, uuid.UUID(str(value))
    except ValueError:
        raise Rejected(
            "invalid_payload",
            f"the record id at {pointer(path)} is not a uuid",
            errors=[{"pointer": pointer(path), "detail": f"{str(value)[:80]!r} is not a uuid"}],
        ) from None


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be larger than ``max_bytes``
    (from Content-Length, or while streaming a chunked one): never buffered past that."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_large = int(declared) > max_bytes
        except ValueError:
            raise Rejected("malformed", "Content-Length is not a number") from None
        if too_large:
            raise Rejected("too_large", f"the body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Rejected("too_large", f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive(request: Request) -> Response:
    """The route: read the body (bounded), run the gates in a worker thread, count."""
    intake: WebhookIntake = request.app.state.intake
    started = time.perf_counter()
    try:
        body = await read_limited(request, intake.max_bytes)
        answer = await blocking(intake.handle, request.path_params["token"], request.headers, body)
    except Rejected as rejected:
        answer = rejected.answer()
    elapsed = time.perf_counter() - started
    metrics.WEBHOOK_REQUESTS.labels(answer.outcome).inc()
    metrics.WEBHOOK_INTAKE.labels(answer.outcome).observe(elapsed)
    if answer.reason:
        metrics.WEBHOOK_REJECTS.labels(answer.reason).inc()
    structlog.contextvars.bind_contextvars(
        workspace_id=str(answer.workspace_id) if answer.workspace_id else None,
        automation_id=str(answer.automation_id) if answer.automation_id else None,
        webhook_outcome=answer.outcome,
        webhook_reason=answer.reason,
        event_id=answer.body.get("event_id"),
    )
    return answer.response()
