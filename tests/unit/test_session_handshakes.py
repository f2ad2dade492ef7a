"""The sans-I/O session handshakes driven with scripted bytes: no sockets, any chunk split, hostile peers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from vault_proxy.sessions.handshake import Action, UpstreamLogin
from vault_proxy.sessions.imap import ImapLogin
from vault_proxy.sessions.imap_local import ImapLocal
from vault_proxy.sessions.postgres_local import PostgresLocal
from vault_proxy.sessions.postgres_login import PostgresLogin, UpstreamState
from vault_proxy.sessions.smtp import SmtpLocal, SmtpLogin

PASSWORD = "s3cr3t-Pa55word"
SECRET = "0123456789abcdef0123456789abcdef"


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


Answer = bytes | Callable[[bytes], bytes]


def _drive(machine: UpstreamLogin, server: list[Answer], cuts: list[int]) -> tuple[list[bytes], Action]:
    """Run ``machine`` against a scripted server: ``server[i]`` answers the i-th thing the vault sends
    (``server[0]`` is the greeting; a callable is given the last bytes sent); each answer arrives split
    at ``cuts``. Returns what was sent."""
    sent: list[bytes] = []
    action = machine.start()
    answers = iter(server)
    while True:
        if action.send:
            sent.append(action.send)
        if action.error is not None or action.done:
            return sent, action
        if action.work is not None:
            action = action.work()
            continue
        if action.tls:
            action = machine.tls_started()
            continue
        answer = next(answers, None)
        if answer is None:
            return sent, machine.eof()
        if callable(answer):
            answer = answer(sent[-1] if sent else b"")
        action = Action()
        for chunk in _splits(answer, cuts):
            action = machine.feed(chunk)
            if not action.waits or action.send:
                break


def _run(server: list[bytes], cuts: list[int], starttls: bool = False) -> tuple[SmtpLogin, list[bytes], Action]:
    machine = SmtpLogin("user@example.com", PASSWORD, starttls)
    sent, action = _drive(machine, server, cuts)
    return machine, sent, action


GREETING = b"220 mx.example.com ESMTP\r\n"
EHLO_PLAIN = b"250-mx.example.com\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
EHLO_TLS = b"250-mx.example.com\r\n250-STARTTLS\r\n250 SIZE 1000\r\n"
EHLO_LOGIN = b"250-mx.example.com\r\n250-AUTH=LOGIN\r\n250 PIPELINING\r\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_smtp_plain_login_any_split(cuts: list[int]) -> None:
    machine, sent, action = _run([GREETING, EHLO_PLAIN, b"235 2.7.0 ok\r\n"], cuts)
    assert action.done and action.error is None
    token = base64.b64encode(f"\0user@example.com\0{PASSWORD}".encode())
    assert sent == [b"EHLO vault-proxy\r\n", b"AUTH PLAIN " + token + b"\r\n"]
    assert machine.extensions == ["SIZE 1000", "8BITMIME"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_smtp_starttls_then_login_mechanism_any_split(cuts: list[int]) -> None:
    server = [GREETING, EHLO_TLS, b"220 go ahead\r\n", EHLO_LOGIN, b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n",
              b"235 ok\r\n"]  # fmt: skip
    machine, sent, action = _run(server, cuts, starttls=True)
    assert action.done
    assert sent[:3] == [b"EHLO vault-proxy\r\n", b"STARTTLS\r\n", b"EHLO vault-proxy\r\n"]
    assert sent[3:] == [b"AUTH LOGIN\r\n", base64.b64encode(b"user@example.com") + b"\r\n",
                        base64.b64encode(PASSWORD.encode()) + b"\r\n"]  # fmt: skip
    assert machine.extensions == []


def test_smtp_whole_conversation_in_one_chunk_sends_each_command() -> None:
    machine = SmtpLogin("u", PASSWORD, False)
    action = machine.feed(GREETING + EHLO_PLAIN + b"235 ok\r\nextra")
    assert action.done and action.send.startswith(b"EHLO vault-proxy\r\nAUTH PLAIN ")
    assert machine.trailing == b"extra"


def test_smtp_documented_failures() -> None:
    _, _, action = _run([GREETING, EHLO_PLAIN, b"535 5.7.8 Authentication credentials invalid\r\n"], [])
    assert action.error == "smtp auth failed: 535 5.7.8 Authentication credentials invalid"
    _, _, action = _run([GREETING, EHLO_PLAIN], [], starttls=True)
    assert action.error == "smtp TLS failed: the server does not offer STARTTLS"
    _, _, action = _run([GREETING, EHLO_PLAIN, b"530 Must issue a STARTTLS command first\r\n"], [])
    assert action.error == "smtp auth failed: 530 Must issue a STARTTLS command first"
    _, _, action = _run([b"554 go away\r\n"], [])
    assert action.error == "smtp connect failed: greeting 554"


def test_smtp_starttls_injection_is_refused() -> None:
    machine = SmtpLogin("u", PASSWORD, True)
    machine.feed(GREETING)
    machine.feed(EHLO_TLS)
    action = machine.feed(b"220 go ahead\r\n250 injected\r\n")
    assert (
        not action.tls
        and action.error == "smtp TLS failed: the server sent data before the TLS handshake (at TLS handshake)"
    )


HOSTILE = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"HTTP/1.1 200 OK\r\n",
            b"\r\n",
            b"25\r\n",
            b"250-" * 30000,
            b"250-x\r\n" * 20000,
            b"235 ok\r\n",
            b"334 \r\n",
            b"220-\r\n",
            b"\xff\xfe\r\n",
        ]
    ),  # fmt: skip
)


@settings(max_examples=300, deadline=None)
@given(st.lists(HOSTILE, min_size=0, max_size=6), st.lists(st.integers(0, 400), max_size=6), st.booleans())
def test_smtp_hostile_server_ends_with_a_named_error_or_login(server: list[bytes], cuts: list[int], tls: bool) -> None:
    machine = SmtpLogin("u", PASSWORD, tls)
    sent, action = _drive(machine, [*server], cuts)
    assert action.done or action.error is not None  # never stuck: the scripted server ends with EOF
    if action.error is not None:
        assert action.error.startswith(("smtp connect failed", "smtp TLS failed", "smtp auth failed"))
        assert PASSWORD not in action.error
        assert base64.b64encode(PASSWORD.encode()).decode() not in action.error


@settings(deadline=None)
@given(st.text(max_size=300))
def test_smtp_auth_failure_never_echoes_the_password(noise: str) -> None:
    echoed = f"535 {noise} {PASSWORD} {base64.b64encode(PASSWORD.encode()).decode()}\r\n".encode()
    _, _, action = _run([GREETING, EHLO_PLAIN, echoed], [])
    assert action.error is not None and action.error.startswith("smtp auth failed: 535")
    assert PASSWORD not in action.error


def _local(script: bytes, cuts: list[int], secret: str | None = SECRET) -> tuple[SmtpLocal, bytes, bytes, str | None]:
    local = SmtpLocal(["SIZE 1000"], secret)
    to_client, to_upstream, close = local.greeting, b"", None
    for chunk in _splits(script, cuts):
        step = local.feed(chunk)
        to_client += step.to_client
        to_upstream += step.to_upstream
        if step.close is not None:
            close = step.close
            break
    return local, to_client, to_upstream, close


CLIENT_LOGIN = (b"EHLO me\r\nMAIL FROM:<a@b>\r\nAUTH LOGIN\r\n" + base64.b64encode(b"anyone") + b"\r\n"
                + base64.b64encode(SECRET.encode()) + b"\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_smtp_local_login_any_split(cuts: list[int]) -> None:
    local, to_client, to_upstream, close = _local(CLIENT_LOGIN, cuts)
    assert close is None and local.logged_in
    assert to_upstream == b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
    lines = to_client.decode().splitlines()
    assert lines[0].startswith("220 ") and "250 AUTH PLAIN LOGIN" in lines and "250-SIZE 1000" in lines
    assert lines[-4:] == ["530 5.7.0 Authentication required", "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6",
                          "235 2.7.0 Authentication successful"]  # fmt: skip


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), max_size=5))
def test_smtp_local_plain_and_wrong_secret(cuts: list[int]) -> None:
    good = base64.b64encode(f"\0me\0{SECRET}".encode())
    local, _, _, close = _local(b"AUTH PLAIN\r\n" + good + b"\r\n", cuts)
    assert local.logged_in and close is None
    bad = base64.b64encode(b"\0me\0wrong")
    local, to_client, to_upstream, close = _local(b"AUTH PLAIN " + bad + b"\r\nMAIL FROM:<a@b>\r\n", cuts)
    assert close == "wrong client secret" and not local.logged_in and to_upstream == b""
    assert to_client.endswith(b"535 5.7.8 Authentication credentials invalid\r\n")
    local, _, _, close = _local(b"AUTH PLAIN " + bad + b"\r\n", cuts, secret=None)
    assert local.logged_in and close is None


@settings(deadline=None)
@given(st.binary(max_size=2000))
def test_smtp_local_garbage_never_logs_in_without_the_secret(garbage: bytes) -> None:
    local, _, to_upstream, close = _local(garbage, [])
    assert not local.logged_in and to_upstream == b""
    big = SmtpLocal([], SECRET).feed(b"x" * 20000)
    assert big.close == "line too long before logging in"


# --- IMAP ----------------------------------------------------------------------------------------------


def _imap(server: list[bytes], cuts: list[int], password: str = PASSWORD, starttls: bool = False):
    machine = ImapLogin("al ice", password, starttls)
    sent, action = _drive(machine, server, cuts)
    return machine, sent, action


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_imap_login_any_split(cuts: list[int]) -> None:
    server = [b"* OK ready\r\n", b"* OK extra\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nv1 OK done\r\n",
              b"* OK still\r\nv2 OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] Logged in\r\n"]  # fmt: skip
    machine, sent, action = _imap(server, cuts)
    assert action.done and machine.capabilities == ["IMAP4rev1", "IDLE"]
    assert sent == [b"v1 CAPABILITY\r\n", f'v2 LOGIN "al ice" "{PASSWORD}"\r\n'.encode()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_imap_starttls_authenticate_and_literal_any_split(cuts: list[int]) -> None:
    server = [b"* OK ready\r\n", b"v1 OK begin TLS\r\n", b"* CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN\r\nv2 OK\r\n",
              b"+ \r\n", b"v3 OK in\r\n", b"* CAPABILITY IMAP4rev1 STARTTLS MOVE\r\nv4 OK\r\n"]  # fmt: skip
    machine, sent, action = _imap(server, cuts, starttls=True)
    assert action.done and machine.capabilities == ["IMAP4rev1", "MOVE"]
    token = base64.b64encode(f"\0al ice\0{PASSWORD}".encode())
    assert sent == [b"v1 STARTTLS\r\n", b"v2 CAPABILITY\r\n", b"v3 AUTHENTICATE PLAIN\r\n", token + b"\r\n",
                    b"v4 CAPABILITY\r\n"]  # fmt: skip
    machine, sent, action = _imap([b"* OK\r\n", b"v1 OK\r\n", b"* BYE\r\n+ go\r\n", b"v2 OK [CAPABILITY X] in\r\n"],
                                  cuts, password="pw-\u00fc")  # fmt: skip
    assert action.done and sent[1:] == [b'v2 LOGIN "al ice" {5}\r\n', "pw-\u00fc".encode() + b"\r\n"]


def test_imap_failures_name_the_step() -> None:
    _, _, action = _imap([b"* OK\r\n", b"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\nv1 OK\r\n"], [])
    assert action.error == "imap auth failed: the server disables LOGIN here and offers no AUTH=PLAIN"
    _, _, action = _imap([b"* OK\r\n", b"v1 OK\r\n", f"v2 NO [AUTHENTICATIONFAILED] {PASSWORD}\r\n".encode()], [])
    assert action.error == "imap auth failed: NO [AUTHENTICATIONFAILED] ***"
    _, _, action = _imap([b"* OK\r\n", b"v1 NO\r\n"], [], starttls=True)
    assert action.error == "imap TLS failed: STARTTLS answered NO"
    _, _, action = _imap([b"* OK\r\n", b"v1 OK\r\n* OK injected\r\n"], [], starttls=True)
    assert action.error == "imap TLS failed: the server sent data before the TLS handshake"
    _, _, action = _imap([b"* OK\r\n"], [])
    assert action.error == "imap connect failed: the server closed the connection (at CAPABILITY)"
    _, _, action = _imap([b"HTTP/1.1 400\r\n"], [])
    assert action.error == "imap connect failed: greeting 'HTTP/1.1 400'"
    _, _, action = _imap([b"* OK\r\n", b"x" * 70000], [])
    assert action.error == "imap connect failed: line too long (at CAPABILITY)"
    _, _, action = _imap([b"* OK\r\n", b"* x\r\n" * 400000], [])
    assert action.error == "imap connect failed: too many untagged lines (at CAPABILITY)"


IMAP_HOSTILE = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"* OK\r\n",
            b"* PREAUTH\r\n",
            b"* CAPABILITY AUTH=PLAIN SASL-IR LOGINDISABLED\r\n",
            b"v1 OK\r\n",
            b"v2 OK\r\n",
            b"v2 NO bad\r\n",
            b"+ \r\n",
            b"v3 OK\r\n",
            b"\r\n",
            b"* CAPABILITY IMAP4rev1\r\n",
            b"v1 OK [CAPABILITY X]\r\n",
        ]
    ),  # fmt: skip
)


@settings(max_examples=300, deadline=None)
@given(st.lists(IMAP_HOSTILE, max_size=7), st.lists(st.integers(0, 300), max_size=6), st.booleans(),
       st.sampled_from([PASSWORD, "pw-\u00fc-1234"]))  # fmt: skip
def test_imap_hostile_server_ends_with_a_named_error_or_login(server, cuts, tls: bool, password: str) -> None:
    machine = ImapLogin("u", password, tls)
    _, action = _drive(machine, server, cuts)
    assert action.done or action.error is not None
    if action.error is not None:
        assert action.error.startswith(("imap connect failed", "imap TLS failed", "imap auth failed"))
        assert password not in action.error


def _imap_local(script: bytes, cuts: list[int], secret: str | None = SECRET):
    local = ImapLocal(["IMAP4rev1", "IDLE", "COMPRESS=DEFLATE"], secret)
    to_client, to_upstream, close = local.greeting, b"", None
    for chunk in _splits(script, cuts):
        step = local.feed(chunk)
        to_client += step.to_client
        to_upstream += step.to_upstream
        if step.close is not None:
            close = step.close
            break
    return local, to_client, to_upstream, close


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_imap_local_login_any_split(cuts: list[int]) -> None:
    script = (b"a1 CAPABILITY\r\na2 SELECT INBOX\r\na3 LOGIN {3}\r\nbob {32+}\r\n" + SECRET.encode()
              + b"\r\na4 SELECT INBOX\r\na5 FETCH 1 BODY[]\r\n")  # fmt: skip
    local, to_client, to_upstream, close = _imap_local(script, cuts)
    assert close is None and local.logged_in
    assert to_upstream == b"a4 SELECT INBOX\r\na5 FETCH 1 BODY[]\r\n"
    lines = to_client.decode().splitlines()
    assert lines[0].startswith("* OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE AUTH=PLAIN SASL-IR]")
    assert lines[-3:] == ["a2 BAD log in first (log in with the session's client secret)", "+ go ahead",
                          "a3 OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE] Logged in"]  # fmt: skip


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), max_size=5))
def test_imap_local_authenticate_and_wrong_secret(cuts: list[int]) -> None:
    good = base64.b64encode(f"\0me\0{SECRET}".encode())
    local, to_client, _, close = _imap_local(
        b"a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE PLAIN\r\n" + good + b"\r\n", cuts
    )
    assert local.logged_in and close is None and b"a BAD AUTHENTICATE cancelled" in to_client
    local, to_client, to_upstream, close = _imap_local(b'a LOGIN me "wrong"\r\nb SELECT INBOX\r\n', cuts)
    assert close == "wrong client secret" and to_upstream == b""
    assert to_client.endswith(b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
    local, _, _, close = _imap_local(b"a LOGIN {99999999}\r\n", cuts)
    assert close == "literal too large"
    local, _, _, close = _imap_local(b'a LOGIN me "wrong"\r\n', cuts, secret=None)
    assert local.logged_in and close is None


# --- Postgres ------------------------------------------------------------------------------------------


def _pg(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _auth(code: int, data: bytes = b"") -> bytes:
    return _pg(b"R", struct.pack("!I", code) + data)


AFTER_LOGIN = (_auth(0) + _pg(b"S", b"server_version\x0016.1\x00") + _pg(b"N", b"Mnotice\x00\x00")
               + _pg(b"K", b"12345678") + _pg(b"Z", b"I"))  # fmt: skip


class ScramServer:
    """The server side of SCRAM-SHA-256 for ``PASSWORD`` (few iterations: these are tests)."""

    def __init__(self, password: str = PASSWORD, tamper: bool = False) -> None:
        self.salted = hashlib.pbkdf2_hmac("sha256", password.encode(), b"salt", 16)
        self.tamper = tamper
        self.auth_message = b""

    def first(self, sent: bytes) -> bytes:
        client_first_bare = sent[sent.index(b"n,,") + 3 :].decode()
        nonce = client_first_bare.split("r=", 1)[1] + "SERVER"
        self.server_first = f"r={nonce},s={base64.b64encode(b'salt').decode()},i=16"
        self.client_first_bare = client_first_bare
        return _auth(11, self.server_first.encode())

    def final(self, sent: bytes) -> bytes:
        without_proof = sent[5:].decode().rsplit(",p=", 1)[0]
        message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        server_key = hmac.new(self.salted, b"Server Key", hashlib.sha256).digest()
        signature = hmac.new(server_key, message, hashlib.sha256).digest()
        if self.tamper:
            signature = bytes(32)
        return _auth(12, b"v=" + base64.b64encode(signature)) + AFTER_LOGIN


def _postgres(server: list[Answer], cuts: list[int], tls: str = "prefer", password: str = PASSWORD):
    machine = PostgresLogin("app", password, "appdb", tls, read_only=True)
    sent, action = _drive(machine, server, cuts)
    return machine, sent, action


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_postgres_scram_login_any_split(cuts: list[int]) -> None:
    scram = ScramServer()
    server: list[Answer] = [b"N", _auth(10, b"SCRAM-SHA-256\x00\x00"), scram.first, scram.final]
    machine, sent, action = _postgres(server, cuts)
    assert action.done and action.error is None
    assert machine.state.parameters == {"server_version": "16.1"} and machine.state.backend_key == b"12345678"
    assert sent[0] == struct.pack("!II", 8, 80877103)
    assert b"user\x00app\x00database\x00appdb\x00default_transaction_read_only\x00on\x00" in sent[1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_postgres_cleartext_over_tls_any_split(cuts: list[int]) -> None:
    machine, sent, action = _postgres([b"S", _auth(3), AFTER_LOGIN + b"extra"], cuts, tls="require")
    assert action.done and sent[-1] == _pg(b"p", PASSWORD.encode() + b"\x00")
    assert b"extra".startswith(machine.trailing)  # what came in the chunk with ReadyForQuery (the rest is unread)


def test_postgres_failures_name_the_step() -> None:
    _, _, action = _postgres([b"N"], [], tls="require")
    assert action.error == "postgres TLS failed: the server does not accept TLS (postgres_tls is require)"
    _, _, action = _postgres([b"N", _auth(3)], [])
    assert action.error is not None and action.error.startswith("postgres auth failed: the server asks for a cleartext")
    error = _pg(b"E", b'SFATAL\x00C28P01\x00Mpassword authentication failed for user "app"\x00\x00')
    _, _, action = _postgres([b"N", error], [])
    assert action.error == 'postgres auth failed: password authentication failed for user "app" (SQLSTATE 28P01)'
    scram = ScramServer(tamper=True)
    _, _, action = _postgres([b"N", _auth(10, b"SCRAM-SHA-256\x00\x00"), scram.first, scram.final], [])
    assert action.error == "postgres auth failed: server signature does not match"
    _, _, action = _postgres([b"N", _auth(10, b"SCRAM-SHA-256\x00\x00"), _auth(0)], [])
    assert action.error is not None and "SCRAM" in action.error
    _, _, action = _postgres([b"N", _auth(0), _pg(b"E", b'C3D000\x00Mdatabase "appdb" does not exist\x00\x00')], [])
    assert action.error == 'postgres login failed: database "appdb" does not exist (SQLSTATE 3D000)'
    _, _, action = _postgres([b"HTTP/1.1"], [])
    assert action.error == "postgres connect failed: not a PostgreSQL server"
    _, _, action = _postgres([b"S" + _auth(3)], [], tls="require")
    assert action.error == "postgres TLS failed: the server sent data before the TLS handshake"
    _, _, action = _postgres([b"N", b"R\xff\xff\xff\xff"], [])
    assert action.error == "postgres connect failed: the server broke off the handshake (at auth)"
    _, _, action = _postgres([b"N", _auth(0)], [])
    assert action.error == "postgres connect failed: the server broke off the handshake (at login)"


PG_HOSTILE = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"S",
            b"N",
            _auth(3),
            _auth(5, b"salt"),
            _auth(10, b"SCRAM-SHA-256\x00\x00"),
            _auth(11, b"r=x"),
            _auth(11, b"r=,s=!!,i=0"),
            _auth(12, b"e=bad"),
            _auth(12, b"v=AAAA"),
            _auth(0),
            _auth(99),
            AFTER_LOGIN,
            _pg(b"E", f"C28P01\x00M{PASSWORD}\x00\x00".encode()),
            _pg(b"Z", b"I"),
            _pg(b"R", b""),
        ]
    ),  # fmt: skip
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PG_HOSTILE, max_size=7), st.lists(st.integers(0, 200), max_size=6),
       st.sampled_from(["require", "prefer", "disable"]))  # fmt: skip
def test_postgres_hostile_server_ends_with_a_named_error_or_login(server, cuts, tls: str) -> None:
    machine = PostgresLogin("app", PASSWORD, "appdb", tls)
    _, action = _drive(machine, server, cuts)
    assert action.done or action.error is not None
    if action.error is not None:
        assert action.error.startswith(("postgres connect failed", "postgres TLS failed", "postgres auth failed",
                                        "postgres login failed"))  # fmt: skip
        assert PASSWORD not in action.error


def _startup(params: dict[str, str], version: int = 196608) -> bytes:
    body = struct.pack("!I", version) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
    return struct.pack("!I", len(body) + 5) + body + b"\0"


STATE = UpstreamState(parameters={"server_version": "16.1", "application_name": ""}, backend_key=b"12345678")


def _pg_local(script: bytes, cuts: list[int], secret: str | None = SECRET, upstream: bytes = b"", read_only=False):
    local = PostgresLocal(STATE, secret, read_only)
    to_client, to_upstream, close = b"", b"", None
    for chunk in _splits(script, cuts):
        step = local.feed(chunk)
        if local.wants_upstream and step.close is None:
            to_client, to_upstream = to_client + step.to_client, to_upstream + step.to_upstream
            step = local.feed_upstream(upstream)
        to_client += step.to_client
        to_upstream += step.to_upstream
        if step.close is not None:
            close = step.close
            break
    return local, to_client, to_upstream, close


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_postgres_local_login_any_split(cuts: list[int]) -> None:
    script = (struct.pack("!II", 8, 80877103) + _startup({"user": "x", "database": "y", "application_name": "psql"})
              + _pg(b"p", SECRET.encode() + b"\0") + _pg(b"Q", b"SELECT 1\0"))  # fmt: skip
    upstream = _pg(b"T", b"") + _pg(b"S", b"application_name\x00psql\x00") + _pg(b"Z", b"I")
    local, to_client, to_upstream, close = _pg_local(script, cuts, upstream=upstream)
    assert close is None and local.logged_in
    assert to_upstream.startswith(b"Q") and b"set_config(E'application_name', E'psql', false)" in to_upstream
    assert to_upstream.endswith(_pg(b"Q", b"SELECT 1\0"))
    assert to_client.startswith(b"N" + _auth(3) + _auth(0))
    assert _pg(b"S", b"application_name\x00psql\x00") in to_client and to_client.endswith(
        _pg(b"K", b"12345678") + _pg(b"Z", b"I")
    )


def test_postgres_local_refusals() -> None:
    hello = _startup({"user": "x"})
    _, to_client, to_upstream, close = _pg_local(hello + _pg(b"p", b"wrong\0"), [])
    assert close == "wrong client secret" and to_upstream == b"" and b"28P01" in to_client
    local, to_client, _, close = _pg_local(hello, [], secret=None)
    assert local.logged_in and close is None and to_client.startswith(_auth(0))
    _, _, _, close = _pg_local(_startup({"user": "x", "replication": "true"}), [])
    assert close == "startup refused (SQLSTATE 0A000)"
    _, _, _, close = _pg_local(struct.pack("!IIII", 16, 80877102, 1, 2), [])
    assert close == "startup refused (SQLSTATE 0A000)"
    _, _, _, close = _pg_local(_startup({"options": "-c default_transaction_read_only=off"}), [], None, read_only=True)
    assert close is not None and close.startswith("startup refused")
    bad = _pg(b"E", b"C22023\x00Mbad value\x00\x00") + _pg(b"Z", b"I")
    _, to_client, _, close = _pg_local(_startup({"DateStyle": "nonsense"}), [], None, upstream=bad)
    assert close == "startup refused (SQLSTATE 22023)" and b"bad value" in to_client
    _, _, _, close = _pg_local(struct.pack("!I", 99999), [])
    assert close == "startup packet length 99999 out of range"
    local = PostgresLocal(STATE, None)
    local.feed(_startup({"TimeZone": "UTC"}))
    assert local.wants_upstream and local.feed_upstream(b"").close == "the upstream closed during the startup"


@settings(deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, SECRET]))
def test_postgres_local_garbage_never_logs_in_without_the_secret(garbage: bytes, secret: str | None) -> None:
    local, _, to_upstream, close = _pg_local(garbage, [], secret, upstream=_pg(b"Z", b"I"))
    if secret is not None:
        assert not local.logged_in and to_upstream == b""


# --- the runner ----------------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data


async def test_runner_sends_hands_back_trailing_bytes_and_names_failures() -> None:
    import asyncio

    from vault_proxy.sessions.errors import SessionError
    from vault_proxy.sessions.handshake import run_upstream

    reader, writer = asyncio.StreamReader(), _Writer()
    reader.feed_data(GREETING + EHLO_PLAIN + b"235 ok\r\n* pipelined\r\n")
    stream = await run_upstream(SmtpLogin("u", PASSWORD, False), (reader, writer), None, 1.0)  # type: ignore[arg-type]
    assert stream[0] is reader and writer.sent.startswith(b"EHLO vault-proxy\r\nAUTH PLAIN ")
    assert await reader.read(100) == b"* pipelined\r\n"  # left for the splice, not swallowed by the login

    silent = asyncio.StreamReader()
    try:
        await run_upstream(SmtpLogin("u", PASSWORD, False), (silent, _Writer()), None, 0.05)  # type: ignore[arg-type]
    except SessionError as exc:
        assert exc.message == "smtp connect failed: TimeoutError"
    else:
        raise AssertionError("no timeout")

    scram, pg_reader = ScramServer(), asyncio.StreamReader()
    pg_writer = _Writer()
    machine = PostgresLogin("app", PASSWORD, "appdb", "disable")

    async def server() -> None:  # answers as the vault writes: the SCRAM proof comes from a thread
        pg_reader.feed_data(_auth(10, b"SCRAM-SHA-256\x00\x00"))
        while b"n,," not in pg_writer.sent:
            await asyncio.sleep(0.01)
        pg_reader.feed_data(scram.first(pg_writer.sent[pg_writer.sent.index(b"p") :]))
        while b",p=" not in pg_writer.sent:
            await asyncio.sleep(0.01)
        proof = pg_writer.sent[pg_writer.sent.rindex(b"p\x00") :]
        pg_reader.feed_data(scram.final(proof))

    task = asyncio.ensure_future(server())
    await run_upstream(machine, (pg_reader, pg_writer), None, 2.0)  # type: ignore[arg-type]
    await task
    assert machine.state.backend_key == b"12345678"
