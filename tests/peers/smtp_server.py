"""A local SMTP server with AUTH for session tests (aiosmtpd): a STARTTLS port and an implicit-TLS port.

Both ports require a login with ``user``/``password`` (only over TLS) and keep every accepted message in
``messages`` with the user that authenticated, so a test can check the vault logged in for the client.
"""

from __future__ import annotations

import secrets
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from process_peer import free_port

# The implicit-TLS port requires AUTH without aiosmtpd's STARTTLS flag (it is TLS from the first byte).
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    auth_user: str
    tls: bool
    data: str


class _Handler:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls = server.transport.get_extra_info("ssl_object") is not None if server.transport else False
        user = session.auth_data.decode() if isinstance(session.auth_data, bytes) else str(session.auth_data)
        content = envelope.content.decode("utf-8", "replace") if isinstance(envelope.content, bytes) else ""
        with self.lock:
            self.messages.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), user, tls, content))
        return "250 Message accepted"


class SmtpServer:
    host = "127.0.0.1"

    def __init__(self, workdir: Path, ca: trustme.CA) -> None:
        self.user = "mailer"
        self.password = f"smtp-pw-{secrets.token_hex(10)}"
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._tls)
        self._handler = _Handler()
        self._controllers: list[Controller] = []
        self.port = self.tls_port = 0
        self.workdir = workdir

    @property
    def messages(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.messages)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == (
            self.user, self.password)  # fmt: skip
        return AuthResult(success=ok, auth_data=auth_data.login if ok else None, handled=False)

    def start(self) -> SmtpServer:
        common = {"authenticator": self._authenticate, "auth_require_tls": True, "auth_required": True}
        self.port, self.tls_port = free_port(), free_port()
        starttls = Controller(self._handler, hostname=self.host, port=self.port, tls_context=self._tls,
                              require_starttls=True, **common)  # fmt: skip
        # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; this port is TLS from the first byte.
        implicit = Controller(self._handler, hostname=self.host, port=self.tls_port, ssl_context=self._tls,
                              **{**common, "auth_require_tls": False})  # fmt: skip
        for controller in (starttls, implicit):
            controller.start()
            self._controllers.append(controller)
        return self

    def stop(self) -> None:
        for controller in self._controllers:
            controller.stop()
        self._controllers.clear()
