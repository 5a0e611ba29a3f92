"""send_email against a local SMTP server, and its record in ``emails``."""

from __future__ import annotations

import uuid

import pytest
from fakes.crm import insert, make_contact, make_workspace, rows
from fakes.http_server import refusing_port
from fakes.smtp_server import smtp_server

from actions import ActionEnv, ActionError
from actions.email import SEND_EMAIL, message_id, smtp_endpoint
from engine.db import tenant_transaction

PARAMS = {"to": "ann@example.com", "subject": "Welcome", "body_text": "Hi Ann"}


@pytest.fixture
def smtp():
    with smtp_server() as server:
        yield server


@pytest.fixture
def ws(db):
    return make_workspace(db)


def env_for(url: str | None) -> ActionEnv:
    return ActionEnv(smtp_url=url, email_from="Automations <bot@acme.example>", smtp_timeout=5)


def record(db, step, params, output):
    with tenant_transaction(db, step.workspace_id, dict_rows=True) as cur:
        return SEND_EMAIL.record(cur, params, step, output)


def test_send_email_arrives_with_the_message_id_derived_from_the_key(smtp, ws):
    step = ws.step(env=env_for(smtp.url))

    out = SEND_EMAIL.run(PARAMS, step)

    [got] = smtp.messages
    assert got.message["Message-ID"] == message_id(step.idempotency_key) == out["message_id"]
    assert got.message["Subject"] == "Welcome"
    assert got.message.get_content().strip() == "Hi Ann"
    assert (got.mail_from, got.rcpt_tos) == ("bot@acme.example", ["ann@example.com"])


def test_send_email_resend_carries_the_same_message_id(smtp, ws):
    step = ws.step(env=env_for(smtp.url))

    SEND_EMAIL.run(PARAMS, step)
    SEND_EMAIL.run(PARAMS, step)

    assert len({m.message["Message-ID"] for m in smtp.messages}) == 1


def test_send_email_delivers_bcc_without_showing_it(smtp, ws):
    step = ws.step(env=env_for(smtp.url))

    SEND_EMAIL.run({**PARAMS, "cc": ["cc@example.com"], "bcc": "hidden@example.com"}, step)

    [got] = smtp.messages
    assert sorted(got.rcpt_tos) == ["ann@example.com", "cc@example.com", "hidden@example.com"]
    assert got.message["Bcc"] is None and got.message["Cc"] == "cc@example.com"


def test_send_email_logs_in_with_the_credentials_of_the_smtp_url(ws):
    with smtp_server(credentials=("robot", "s3cret")) as server:
        SEND_EMAIL.run(PARAMS, ws.step(env=env_for(server.url)))

        assert [m.login for m in server.messages] == ["robot"]


def test_send_email_is_recorded_once_even_when_record_runs_twice(db, smtp, ws):
    contact = make_contact(db, ws, email="ann@example.com")
    step = ws.step(env=env_for(smtp.url), trigger_entity="contact", trigger_entity_id=contact)

    out = SEND_EMAIL.run(PARAMS, step)
    first = record(db, step, PARAMS, out)
    again = record(db, step, PARAMS, out)

    assert (first["recorded"], again["recorded"], first["email_id"]) == (
        True,
        False,
        again["email_id"],
    )
    [saved] = rows(db, "SELECT * FROM emails")
    assert saved["message_id"] == out["message_id"]
    assert (saved["is_sent"], saved["folder"], saved["contact_id"]) == (True, "sent", contact)
    assert saved["tracking_id"] == uuid.UUID(out["tracking_id"])
    assert saved["sent_at"] is not None and saved["to_emails"] == ["ann@example.com"]
    assert saved["workspace_id"] == ws.id


def test_send_email_prepare_resolves_the_record_owners_primary_account(db, smtp, ws):
    rep = ws.add_member(db)
    account = insert(
        db,
        "email_accounts",
        workspace_id=ws.id,
        user_id=rep,
        email="rep@acme.example",
        display_name="Rep",
        provider="smtp",
        is_primary=True,
    )
    contact = make_contact(db, ws, owner_id=rep)
    step = ws.step(
        env=ActionEnv(smtp_url=smtp.url), trigger_entity="contact", trigger_entity_id=contact
    )

    with tenant_transaction(db, ws.id, dict_rows=True) as cur:
        params = SEND_EMAIL.prepare(cur, PARAMS, step)
    out = SEND_EMAIL.run(params, step)
    record(db, step, params, out)

    assert smtp.messages[0].mail_from == "rep@acme.example"
    assert rows(db, "SELECT email_account_id FROM emails") == [{"email_account_id": account}]


def test_send_email_prepare_refuses_an_account_of_another_workspace(db, ws):
    other = make_workspace(db, "other")
    foreign = insert(
        db,
        "email_accounts",
        workspace_id=other.id,
        user_id=other.owner,
        email="ceo@other.example",
        provider="smtp",
    )

    with tenant_transaction(db, ws.id, dict_rows=True) as cur, pytest.raises(ActionError) as e:
        SEND_EMAIL.prepare(cur, {**PARAMS, "from_account": str(foreign)}, ws.step())

    assert e.value.error_class == "not_found"


def test_send_email_without_smtp_configured_is_a_config_error(ws):
    with pytest.raises(ActionError) as caught:
        SEND_EMAIL.run(PARAMS, ws.step(env=env_for(None)))

    assert (caught.value.error_class, caught.value.retryable) == ("config", False)


def test_send_email_to_a_refused_port_is_a_retryable_network_error(ws):
    with refusing_port() as port, pytest.raises(ActionError) as caught:
        SEND_EMAIL.run(PARAMS, ws.step(env=env_for(f"smtp://127.0.0.1:{port}")))

    assert (caught.value.error_class, caught.value.retryable) == ("network", True)


def test_send_email_to_recipients_the_server_rejects_is_not_retryable(ws):
    with (
        smtp_server(refuse={"ann@example.com": "550 no such user"}) as server,
        pytest.raises(ActionError) as caught,
    ):
        SEND_EMAIL.run(PARAMS, ws.step(env=env_for(server.url)))

    assert (caught.value.error_class, caught.value.retryable) == ("validation", False)
    assert "ann@example.com" in caught.value.message


def test_send_email_with_a_malformed_recipient_is_a_validation_error(smtp, ws):
    with pytest.raises(ActionError, match="to") as caught:
        SEND_EMAIL.run({**PARAMS, "to": ""}, ws.step(env=env_for(smtp.url)))

    assert caught.value.error_class == "validation"
    assert smtp.messages == []


def test_smtp_url_gives_host_port_tls_and_decoded_credentials():
    endpoint = smtp_endpoint("smtps://me%40acme:p%2Fw@mail.example?starttls=false")

    assert endpoint == ("mail.example", 465, True, False, "me@acme", "p/w")


def test_send_email_refuses_a_subject_that_would_inject_headers(smtp, ws):
    params = {**PARAMS, "subject": "Hi\r\nBcc: victim@example.com"}

    with pytest.raises(ActionError, match="subject") as caught:
        SEND_EMAIL.run(params, ws.step(env=env_for(smtp.url)))

    assert caught.value.error_class == "validation"
    assert smtp.messages == []


def test_send_email_keeps_recipient_display_names_in_the_header(smtp, ws):
    SEND_EMAIL.run({**PARAMS, "to": "Ann Lee <ann@example.com>"}, ws.step(env=env_for(smtp.url)))

    [got] = smtp.messages
    assert got.message["To"] == "Ann Lee <ann@example.com>"
    assert got.rcpt_tos == ["ann@example.com"]
