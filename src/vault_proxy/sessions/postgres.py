"""Postgres sessions: the vault does TLS and SCRAM upstream; the local client logs in with the client secret.

Upstream: ``postgres_login.PostgresLogin`` (sans-I/O, run by ``handshake.run_upstream``): SSLRequest per
``postgres_tls``, startup, SCRAM-SHA-256, then the server's ParameterStatus and BackendKeyData until
ReadyForQuery (with ``postgres_read_only``, the startup also sets ``default_transaction_read_only=on``,
which RESET and DISCARD ALL return to). Local: ``postgres_local.PostgresLocal`` (sans-I/O, a client
filter): the startup answered, the client secret checked as the password, the startup's parameters
applied upstream with ``set_config``, the upstream's state replayed; then ``PostgresFilter``.
"""

from __future__ import annotations

import ssl

from ..redaction import SecretSet
from ..vault.models import PostgresAuth
from ..vault.secret import reveal
from .dial import Stream
from .handshake import Tls, run_upstream
from .listener import Driver
from .masking import PostgresFrames, ReplyMask
from .postgres_local import PostgresLocal, startup_settings
from .postgres_login import PostgresLogin, UpstreamState

__all__ = ["UpstreamState", "driver", "login", "startup_settings"]
TIMEOUT = 15.0


async def login(stream: Stream, auth: PostgresAuth, tls: ssl.SSLContext) -> tuple[Stream, UpstreamState]:
    """TLS per mode, startup, authentication; returns the stream and what to replay locally."""
    machine = PostgresLogin(
        auth.postgres_user, reveal(auth.postgres_password), auth.postgres_db, auth.postgres_tls,
        auth.postgres_read_only, SecretSet(auth.secret_values()),
    )  # fmt: skip
    stream = await run_upstream(machine, stream, Tls(auth.postgres_host, tls), TIMEOUT)
    return stream, machine.state


def driver(state: UpstreamState, auth: PostgresAuth, client_secret: str | None) -> Driver:
    return Driver(
        client_filter=PostgresLocal(state, client_secret, auth.postgres_read_only),
        reply_filter=ReplyMask.of(SecretSet(auth.secret_values()), PostgresFrames()),
    )
