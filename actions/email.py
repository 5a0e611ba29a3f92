"""send_email: deliver a message over SMTP, then record it in ``emails``.

Three halves, because the send is I/O that no transaction can roll back:

* ``prepare(cur, params, step)`` (optional, before the send) resolves the sender: a
  ``from_account`` uuid or address is looked up in ``email_accounts`` (a uuid that is not an
  account of the workspace is ``not_found``); with no ``from_account``, the primary account of
  the trigger record's owner, else the workspace's primary account. It returns the params with
  ``from_account`` as ``"Display Name <address>"``. An address that matches no account is kept
  as written (the SMTP relay decides whether we may send as it).
* ``run(params, step)`` builds the message and sends it. Without ``prepare``, ``from_account``
  must be an address, else :attr:`ActionEnv.email_from` is the sender.
* ``record(cur, params, step, output)`` (after the send) inserts the ``emails`` row: folder
  ``sent``, ``is_sent``, ``sent_at``, Message-ID, tracking id, the account of the sender
  address, ``contact_id``/``deal_id`` when the trigger is a (visible) contact/deal. Unique
  ``(workspace_id, message_id)`` with ``ON CONFLICT DO NOTHING`` makes it idempotent.

Idempotency: the Message-ID is ``<sha256(idempotency key)[:32]@haste>`` and the tracking id
``uuid5(key)``, identical on every attempt. SMTP has no idempotency: if the connection drops
after the server took the message but before it said so, the retry sends it again, and the
recipient's system can recognise the duplicate by its Message-ID. That window is what "at
least once" means here.

Errors: no ``smtp_url`` or bad credentials -> ``config``; refused connection, dropped
connection, SMTP 4xx (transient, e.g. 421/450/451) -> ``network`` (retryable); socket timeout
-> ``timeout``; SMTP 5xx for the sender, the recipients or the data -> ``validation`` (not
retryable: sending again gets the same answer). Recipients refused while others were accepted
are not an error: the output lists them under ``refused``.

Open and click tracking are recorded (``track_opens``/``track_clicks`` on the row, with the
tracking id) but no pixel or link rewriting is done yet: that needs the public tracking URL
of the web process, which does not exist yet.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

from actions.base import (
    ActionEnv,
    ActionError,
    Cursor,
    ExternalAction,
    Output,
    Params,
    StepContext,
    as_uuid,
    database_errors,
    optional_target,
    step_uuid,
)

__all__ = ["SEND_EMAIL", "build_message", "message_id", "smtp_endpoint"]

#: Domain part of our Message-IDs; fixed so that a Message-ID names the step, not the host.
MESSAGE_ID_DOMAIN = "haste"
SNIPPET_CHARS = 200

ACCOUNT_BY_ID = """
SELECT email, display_name FROM email_accounts WHERE id = %s AND deleted_at IS NULL
"""
ACCOUNT_BY_ADDRESS = """
SELECT id, email, display_name FROM email_accounts
WHERE lower(email) = lower(%s) AND deleted_at IS NULL
ORDER BY is_primary DESC, created_at, id LIMIT 1
"""
ACCOUNT_OF_USER = """
SELECT email, display_name FROM email_accounts
WHERE user_id = %s AND deleted_at IS NULL
ORDER BY is_primary DESC, created_at, id LIMIT 1
"""
ACCOUNT_OF_WORKSPACE = """
SELECT email, display_name FROM email_accounts
WHERE deleted_at IS NULL
ORDER BY is_primary DESC, created_at, id LIMIT 1
"""
OWNER_OF = {
    "contact": "SELECT owner_id FROM contacts WHERE id = %s",
    "company": "SELECT owner_id FROM companies WHERE id = %s",
    "deal": "SELECT owner_id FROM deals WHERE id = %s",
}
VISIBLE = {
    "contact": "SELECT id FROM contacts WHERE id = %s",
    "deal": "SELECT id FROM deals WHERE id = %s",
}
EMAIL_RECORD = """
INSERT INTO emails (workspace_id, message_id, subject, from_email, from_name, to_emails,
                    cc_emails, bcc_emails, reply_to, body_html, body_text, snippet, folder,
                    is_read, is_sent, tracking_id, track_opens, track_clicks,
                    email_account_id, contact_id, deal_id, sent_at)
VALUES (%(workspace_id)s, %(message_id)s, %(subject)s, %(from_email)s, %(from_name)s,
        %(to)s, %(cc)s, %(bcc)s, %(reply_to)s, %(body_html)s, %(body_text)s, %(snippet)s,
        'sent', true, true, %(tracking_id)s, %(track_opens)s, %(track_clicks)s,
        %(email_account_id)s, %(contact_id)s, %(deal_id)s, %(sent_at)s)
ON CONFLICT (workspace_id, message_id) DO NOTHING
RETURNING id
"""
EMAIL_BY_MESSAGE_ID = "SELECT id FROM emails WHERE message_id = %s"


# --- pure parts --------------------------------------------------------------------------


def message_id(idempotency_key: str) -> str:
    """The Message-ID of the step's email: the same on every attempt, so a resend is visible."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


def recipients(value: Any, where: str, *, required: bool = False) -> list[tuple[str, str]]:
    """``(display name, address)`` pairs of a ``to``/``cc``/``bcc`` param: a string
    (comma-separated) or a list."""
    items = [value] if isinstance(value, str) else list(value or [])
    found = [(name, addr) for name, addr in getaddresses([str(item) for item in items]) if addr]
    for _, addr in found:
        if "@" not in addr or any(c.isspace() for c in addr):
            raise ActionError(
                "validation",
                f"{where}: {addr!r} is not an email address",
                details={"field": where, "value": addr},
            )
    if required and not found:
        raise ActionError(
            "validation", f"{where}: no recipient (got {value!r})", details={"field": where}
        )
    return found


def addresses(value: Any, where: str, *, required: bool = False) -> list[str]:
    """The bare addresses of a ``to``/``cc``/``bcc`` param (what the envelope and the row get)."""
    return [addr for _, addr in recipients(value, where, required=required)]


def sender_of(params: Params, env: ActionEnv) -> tuple[str, str]:
    """``(display name, address)`` of the sender, from params (after prepare) or the env."""
    raw = params.get("from_account") or env.email_from
    if not raw:
        raise ActionError(
            "config",
            "no sender: the step has no from_account, no email account was found,"
            " and no default sender (email_from) is configured",
        )
    name, addr = parseaddr(raw)
    if "@" not in addr:
        raise ActionError(
            "config",
            f"from_account: {raw!r} is not an address; an account id must be resolved by"
            " send_email's prepare() before the send",
            details={"field": "from_account", "value": raw},
        )
    return name, addr


def build_message(
    params: Params, step: StepContext, sender: tuple[str, str], now: datetime
) -> EmailMessage:
    """The message as it goes on the wire (Bcc is dropped by the sender, not here).

    A rendered value with a line break in a header (``subject: "x\\r\\nBcc: ..."``) is
    refused as ``validation`` rather than allowed to inject headers.
    """
    text, html = params.get("body_text"), params.get("body_html")
    if text is None and html is None:
        raise ActionError("validation", "one of 'body_text', 'body_html' is required")
    headers = {
        "Message-ID": message_id(step.idempotency_key),
        "Date": format_datetime(now),
        "From": formataddr(sender),
        "To": ", ".join(map(formataddr, recipients(params.get("to"), "to", required=True))),
        "Cc": ", ".join(map(formataddr, recipients(params.get("cc"), "cc"))),
        "Bcc": ", ".join(map(formataddr, recipients(params.get("bcc"), "bcc"))),
        "Reply-To": params.get("reply_to") or "",
        "Subject": params.get("subject") or "",
    }
    msg = EmailMessage()
    for name, value in headers.items():
        if not value and name != "Subject":
            continue
        try:
            msg[name] = value
        except ValueError as exc:
            raise ActionError(
                "validation", f"{name.lower()}: {exc}", details={"field": name.lower()}
            ) from exc
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    return msg


class SmtpEndpoint(NamedTuple):
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None


def smtp_endpoint(url: str) -> SmtpEndpoint:
    """Where and how to connect, from ``smtp://[user:pass@]host[:port][?starttls=true]`` or
    ``smtps://...`` (implicit TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ActionError(
            "config",
            f"smtp_url must be smtp://host[:port] or smtps://..., got scheme {parts.scheme!r}",
        )
    flag = parse_qs(parts.query).get("starttls", ["false"])[0].lower()
    implicit = parts.scheme == "smtps"
    return SmtpEndpoint(
        host=parts.hostname,
        port=parts.port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=flag in ("1", "true", "yes"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def smtp_error(exc: Exception) -> ActionError:
    """The class of an SMTP failure: transient (4xx, connection) or not (5xx, credentials)."""
    if isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError):
        return ActionError("config", f"SMTP refused our login or a needed extension: {exc}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {code for code, _ in exc.recipients.values()}
        refused = {rcpt: f"{code} {msg!r}" for rcpt, (code, msg) in exc.recipients.items()}
        transient = all(400 <= code < 500 for code in codes)
        return ActionError(
            "network" if transient else "validation",
            f"SMTP refused every recipient: {refused}",
            details={"refused": refused},
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        text = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        transient = 400 <= code < 500
        return ActionError(
            "network" if transient else "validation",
            f"SMTP answered {code} {text}",
            details={"smtp_code": code},
        )
    if isinstance(exc, TimeoutError):
        return ActionError("timeout", f"SMTP timed out: {exc}")
    return ActionError("network", f"SMTP connection failed: {exc.__class__.__name__}: {exc}")


# --- I/O edges ---------------------------------------------------------------------------


def _deliver(
    endpoint: SmtpEndpoint,
    timeout: float,
    msg: EmailMessage,
    envelope_from: str,
    recipients: list[str],
) -> dict[str, Any]:
    factory = smtplib.SMTP_SSL if endpoint.implicit_tls else smtplib.SMTP
    with factory(endpoint.host, endpoint.port, timeout=timeout) as smtp:
        if endpoint.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if endpoint.username:
            smtp.login(endpoint.username, endpoint.password or "")
        return smtp.send_message(msg, from_addr=envelope_from, to_addrs=recipients)


def run(params: Params, step: StepContext) -> Output:
    if not step.env.smtp_url:
        raise ActionError("config", "email is not configured (no smtp_url)")
    endpoint = smtp_endpoint(step.env.smtp_url)
    sender = sender_of(params, step.env)
    now = datetime.now(UTC)
    msg = build_message(params, step, sender, now)
    to, cc, bcc = (addresses(params.get(f), f) for f in ("to", "cc", "bcc"))
    try:
        refused = _deliver(endpoint, step.env.smtp_timeout, msg, sender[1], [*to, *cc, *bcc])
    except (smtplib.SMTPException, OSError) as exc:
        raise smtp_error(exc) from exc
    return {
        "message_id": msg["Message-ID"],
        "tracking_id": str(step_uuid(step)),
        "from": sender[1],
        "from_name": sender[0] or None,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "refused": {rcpt: f"{code} {text!r}" for rcpt, (code, text) in refused.items()},
        "sent_at": now.isoformat(),
    }


def _account_address(row: dict[str, Any] | None) -> str | None:
    return formataddr((row["display_name"] or "", row["email"])) if row else None


@database_errors()
def prepare(cur: Cursor, params: Params, step: StepContext) -> Params:
    raw = params.get("from_account")
    if raw and "@" in raw:
        cur.execute(ACCOUNT_BY_ADDRESS, (parseaddr(raw)[1],))
        resolved = _account_address(cur.fetchone()) or raw
    elif raw:
        account_id = as_uuid(raw, "from_account")
        cur.execute(ACCOUNT_BY_ID, (account_id,))
        resolved = _account_address(cur.fetchone())
        if resolved is None:
            raise ActionError(
                "not_found",
                f"from_account: no email account {account_id} in this workspace",
                details={"field": "from_account", "value": raw},
            )
    else:
        resolved = None
        ref = optional_target({}, step, tuple(OWNER_OF))
        if ref is not None:
            cur.execute(OWNER_OF[ref.entity], (ref.id,))
            owner = cur.fetchone()
            if owner and owner["owner_id"]:
                cur.execute(ACCOUNT_OF_USER, (owner["owner_id"],))
                resolved = _account_address(cur.fetchone())
        if resolved is None:
            cur.execute(ACCOUNT_OF_WORKSPACE)
            resolved = _account_address(cur.fetchone())
    return {**params, "from_account": resolved} if resolved else dict(params)


def _visible_trigger(cur: Cursor, step: StepContext, entity: str) -> UUID | None:
    if step.trigger_entity != entity or step.trigger_entity_id is None:
        return None
    cur.execute(VISIBLE[entity], (step.trigger_entity_id,))
    row = cur.fetchone()
    return row["id"] if row else None


def _snippet(params: Params) -> str | None:
    text = params.get("body_text")
    return " ".join(text.split())[:SNIPPET_CHARS] if text else None


@database_errors()
def record(cur: Cursor, params: Params, step: StepContext, output: Output) -> Output:
    cur.execute(ACCOUNT_BY_ADDRESS, (output["from"],))
    account = cur.fetchone()
    cur.execute(
        EMAIL_RECORD,
        {
            "workspace_id": step.workspace_id,
            "message_id": output["message_id"],
            "subject": params.get("subject"),
            "from_email": output["from"],
            "from_name": output.get("from_name"),
            "to": output["to"],
            "cc": output.get("cc") or None,
            "bcc": output.get("bcc") or None,
            "reply_to": params.get("reply_to"),
            "body_html": params.get("body_html"),
            "body_text": params.get("body_text"),
            "snippet": _snippet(params),
            "tracking_id": UUID(output["tracking_id"]),
            "track_opens": bool(params.get("track_opens", False)),
            "track_clicks": bool(params.get("track_clicks", False)),
            "email_account_id": account["id"] if account else None,
            "contact_id": _visible_trigger(cur, step, "contact"),
            "deal_id": _visible_trigger(cur, step, "deal"),
            "sent_at": datetime.fromisoformat(output["sent_at"]),
        },
    )
    row = cur.fetchone()
    recorded = row is not None
    if row is None:
        cur.execute(EMAIL_BY_MESSAGE_ID, (output["message_id"],))
        row = cur.fetchone()
    return {"email_id": str(row["id"]) if row else None, "recorded": recorded}


def describe(params: Params, step: StepContext) -> Output:
    to = addresses(params.get("to"), "to", required=True)
    return {
        "would": f"send email {params.get('subject')!r} to {', '.join(to)}",
        "message_id": message_id(step.idempotency_key),
        "tracking_id": str(step_uuid(step)),
        "from": params.get("from_account")
        or step.env.email_from
        or "<the owner's or workspace's primary email account>",
        "to": to,
        "cc": addresses(params.get("cc"), "cc"),
        "bcc": addresses(params.get("bcc"), "bcc"),
        "subject": params.get("subject"),
        "body_text": params.get("body_text"),
        "body_html": params.get("body_html"),
    }


SEND_EMAIL = ExternalAction("send_email", run, describe, prepare=prepare, record=record)
