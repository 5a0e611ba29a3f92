"""A local SMTP server (aiosmtpd) that keeps every message it accepts.

aiosmtpd's ``Controller`` wants a fixed port and probes it after start-up; binding port 0
is made to work by reading the real port from the listening socket before that probe.
"""

from __future__ import annotations

import email
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    """One accepted message: envelope and parsed content."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None


@dataclass
class FakeSmtp:
    host: str
    port: int
    credentials: tuple[str, str] | None = None
    refuse: dict[str, str] = field(default_factory=dict)
    """Recipient address -> SMTP reply to give at RCPT (e.g. "550 no such user")."""
    messages: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"smtp://{auth}{self.host}:{self.port}"


class _Handler:
    def __init__(self, state: FakeSmtp) -> None:
        self.state = state

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.state.refuse:
            return self.state.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=default_policy)
        auth = session.auth_data if session.authenticated else None
        login = auth.decode() if isinstance(auth, bytes) else auth
        self.state.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, login)
        )
        self.state.arrived.set()
        return "250 Message accepted"


class _EphemeralController(Controller):
    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _authenticator(expected: tuple[str, str]) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == expected
        )
        return AuthResult(success=ok, auth_data=data.login if ok else None)

    return check


@contextmanager
def smtp_server(
    *, credentials: tuple[str, str] | None = None, refuse: Mapping[str, str] | None = None
) -> Iterator[FakeSmtp]:
    """A running server for the block; ``credentials`` offers AUTH (without TLS) and
    records who logged in."""
    state = FakeSmtp("127.0.0.1", 0, credentials, dict(refuse or {}))
    kwargs: dict[str, Any] = {}
    if credentials:
        kwargs = {
            "authenticator": _authenticator(credentials),
            "auth_require_tls": False,
        }
    controller = _EphemeralController(_Handler(state), hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    state.port = controller.port
    try:
        yield state
    finally:
        controller.stop()
