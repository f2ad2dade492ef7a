"""IMAP and Postgres session helpers that decide what goes upstream: quoting, startup settings, SCRAM checks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl

import pytest

from vault_proxy.sessions.errors import SessionError
from vault_proxy.sessions.imap import _quote
from vault_proxy.sessions.imap import login as imap_login
from vault_proxy.sessions.postgres_local import _literal, _option_settings, startup_settings
from vault_proxy.sessions.postgres_wire import error_fields, error_response, parse_pairs, startup_message
from vault_proxy.sessions.scram import ScramClient, ScramError
from vault_proxy.vault.models import ImapAuth


def test_imap_quoting_escapes_or_asks_for_a_literal():
    assert _quote("alice") == '"alice"'
    assert _quote('pa"ss\\word') == '"pa\\"ss\\\\word"'
    assert _quote("ünïcode") is None
    assert _quote("line\r\nbreak") is None


def test_postgres_options_become_settings():
    assert _option_settings("-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB") == {
        "search_path": "a,b",
        "statement_timeout": "5s",
        "work_mem": "64MB",
    }
    assert _option_settings(r"-c application_name=with\ space -X") == {"application_name": "with space"}
    params = {"user": "u", "database": "d", "application_name": "psql", "options": "-c x.y=1", "_pq_.opt": "v"}
    assert startup_settings(params) == {"application_name": "psql", "x.y": "1"}


def test_sql_literal_cannot_be_escaped_from():
    assert _literal("it's a \\ test") == "E'it''s a \\\\ test'"


def test_wire_round_trips():
    raw = startup_message({"user": "app", "database": "db"})
    assert parse_pairs(raw[8:]) == {"user": "app", "database": "db"}
    fields = error_fields(error_response("28P01", "bad password")[5:])
    assert fields["C"] == "28P01" and fields["M"] == "bad password" and fields["S"] == "FATAL"


def _server_first(client_first: bytes, salt: bytes, iterations: int) -> str:
    nonce = client_first.decode().split("r=", 1)[1]
    return f"r={nonce}server-part,s={base64.b64encode(salt).decode()},i={iterations}"


def test_scram_proof_verifies_against_an_independent_server_computation():
    password, salt, iterations = "correct horse", b"salty-salt-1234", 4096
    client = ScramClient(password)
    first = client.first_message()
    server_first = _server_first(first, salt, iterations)
    final = client.final_message(server_first.encode()).decode()
    without_proof, proof_b64 = final.rsplit(",p=", 1)
    # The server's side, as PostgreSQL stores it: StoredKey and ServerKey only.
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    auth_message = f"{first.decode()[3:]},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof_b64), signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    good = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest()).decode()
    client.verify_server(f"v={good}".encode())
    with pytest.raises(ScramError, match="signature"):
        client.verify_server(b"v=" + base64.b64encode(b"x" * 32))


def test_scram_refuses_a_server_that_does_not_extend_the_nonce_or_sends_junk():
    client = ScramClient("pw")
    with pytest.raises(ScramError, match="nonce"):
        client.final_message(b"r=someone-elses,s=c2FsdA==,i=4096")
    first = client.first_message()
    nonce = first.decode().split("r=", 1)[1]
    with pytest.raises(ScramError, match="iteration"):
        client.final_message(f"r={nonce}x,s=c2FsdA==,i=0".encode())
    with pytest.raises(ScramError, match="salt"):
        client.final_message(f"r={nonce}x,s=***,i=4096".encode())
    with pytest.raises(ScramError, match="signature"):
        ScramClient("pw").verify_server(b"v=AAAA")  # before any exchange there is nothing to match
    with pytest.raises(ScramError, match="server error"):
        client.verify_server(b"e=invalid-proof")


class _Recorder:
    """The write side of a scripted upstream: keeps what the vault sent."""

    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    def get_extra_info(self, _name: str) -> None:
        return None


async def _imap_login(capabilities: str, password: str, replies: list[str]) -> tuple[bytes, list[str]]:
    reader = asyncio.StreamReader()
    script = ["* OK ready", f"* CAPABILITY {capabilities}", "v1 OK done", *replies]
    reader.feed_data("".join(f"{line}\r\n" for line in script).encode())
    reader.feed_eof()
    writer = _Recorder()
    auth = ImapAuth(type="imap", imap_host="mail.test", imap_user="al ice", imap_password=password, imap_tls="none")
    _, after = await imap_login((reader, writer), auth, ssl.create_default_context())
    return writer.sent, after


async def test_imap_upstream_command_choice():
    sent, after = await _imap_login("IMAP4rev1 AUTH=PLAIN", 'p"w', ["v2 OK [CAPABILITY IMAP4rev1 IDLE] in"])
    assert sent.endswith(b'v2 LOGIN "al ice" "p\\"w"\r\n') and after == ["IMAP4rev1", "IDLE"]
    sent, _ = await _imap_login("IMAP4rev1 AUTH=PLAIN SASL-IR", "pw-ü", ["v2 OK [CAPABILITY IMAP4rev1] in"])
    token = base64.b64encode("\0al ice\0pw-ü".encode()).decode()
    assert sent.endswith(f"v2 AUTHENTICATE PLAIN {token}\r\n".encode())
    sent, _ = await _imap_login("IMAP4rev1 LOGINDISABLED AUTH=PLAIN", "pw", ["+ ", "v2 OK [CAPABILITY IMAP4rev1] in"])
    assert sent.endswith(b"v2 AUTHENTICATE PLAIN\r\n" + base64.b64encode(b"\0al ice\0pw") + b"\r\n")
    # No AUTH=PLAIN and a value that cannot be quoted: a synchronizing literal after the server's "+".
    sent, _ = await _imap_login("IMAP4rev1", "pw-ü", ["+ go ahead", "v2 OK [CAPABILITY IMAP4rev1] in"])
    assert sent.endswith(b'v2 LOGIN "al ice" {5}\r\npw-\xc3\xbc\r\n')
    with pytest.raises(SessionError, match="LOGINDISABLED|disables LOGIN"):
        await _imap_login("IMAP4rev1 LOGINDISABLED", "pw", [])
    with pytest.raises(SessionError) as failed:
        await _imap_login("IMAP4rev1", "secret-pw", ["v2 NO [AUTHENTICATIONFAILED] bad secret-pw"])
    assert "secret-pw" not in failed.value.message and failed.value.message.startswith("imap auth failed")
