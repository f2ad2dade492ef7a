"""IMAP sessions against a real Dovecot (IMAPS and STARTTLS ports) with Python's imaplib as the client."""

from __future__ import annotations

import base64
import imaplib
import socket
import time

import pytest
from dovecot_server import DovecotServer
from helpers import unique


@pytest.fixture(scope="module")
def dovecot(upstream) -> DovecotServer:
    peer = DovecotServer(upstream.ca).start()
    yield peer
    peer.stop()


def _service(env, peer: DovecotServer, mode: str, password: str | None = None, port: int | None = None) -> str:
    password = password or peer.password
    env.secrets.add(password)
    auth = {"type": "imap", "imap_host": peer.host, "imap_user": peer.user, "imap_password": password,
            "imap_tls": mode, "imap_port": port or (peer.tls_port if mode == "implicit" else peer.port)}  # fmt: skip
    name = unique("imap")
    resp = env.server.http.post("/services", json={"name": name, "auth": auth}, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def _session(env, name: str, **params):
    return env.server.http.post(f"/imap/{name}/session", params=params,
                                headers={"Authorization": f"Bearer {env.token()}"})  # fmt: skip


def _connect(env, name: str) -> tuple[imaplib.IMAP4, str]:
    """imaplib on a new session, and the session's client secret (the password to log in with)."""
    resp = _session(env, name)
    assert resp.status_code == 200, resp.text
    host, port = resp.json()["addr"].rsplit(":", 1)
    return imaplib.IMAP4(host, int(port), timeout=15), resp.json()["client_secret"]


def _login_lines(peer: DovecotServer, at_least: int = 0) -> list[str]:
    """Dovecot's ``Login:`` log lines, waiting (up to 5 s) until there are ``at_least`` of them."""
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in peer.log_text().splitlines() if "imap-login: Info: Login: " in line]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_imaplib_reads_a_delivered_message_with_the_client_secret(proxy_env, dovecot, mode):
    subject = unique("subject")
    dovecot.deliver(subject, "delivered to the Maildir")
    name = _service(proxy_env, dovecot, mode)
    before = len(_login_lines(dovecot))
    client, secret = _connect(proxy_env, name)
    assert "AUTH=PLAIN" in client.capabilities and "STARTTLS" not in client.capabilities
    assert client.login("anybody", secret)[0] == "OK"
    assert client.select("INBOX")[0] == "OK"
    typ, found = client.search(None, "SUBJECT", f'"{subject}"')
    assert typ == "OK" and found[0]
    typ, data = client.fetch(found[0].split()[-1], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and subject.encode() in data[0][1]
    assert client.logout()[0] == "BYE"
    logins = _login_lines(dovecot, before + 1)[before:]
    assert len(logins) == 1 and f"user=<{dovecot.user}>" in logins[0] and "TLS" in logins[0]
    time.sleep(0.3)
    line = [e for e in proxy_env.audit() if e.get("action") == "imap.session" and e.get("service") == name][-1]
    assert line["bytes_to_upstream"] > 0 and line["bytes_to_client"] > 0


def test_authenticate_plain_and_pipelined_commands(proxy_env, dovecot):
    name = _service(proxy_env, dovecot, "implicit")
    body = _session(proxy_env, name).json()
    host, port = body["addr"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"* OK [CAPABILITY ")
        sock.sendall(b"a0 SELECT INBOX\r\n")  # before login: refused here, never reaches the upstream
        assert reader.readline().startswith(b"a0 BAD")
        # AUTHENTICATE without an initial response, then two commands sent before any answer.
        sock.sendall(b"a1 AUTHENTICATE PLAIN\r\n")
        assert reader.readline().startswith(b"+")
        plain = base64.b64encode(b"\0x\0" + body["client_secret"].encode())
        sock.sendall(plain + b"\r\na2 NOOP\r\na3 LOGOUT\r\n")
        lines = [reader.readline() for _ in range(4)]
        assert lines[0].startswith(b"a1 OK")
        assert lines[1].startswith(b"a2 OK")
        assert lines[2].startswith(b"* BYE") and lines[3].startswith(b"a3 OK")


def test_local_login_with_literals(proxy_env, dovecot):
    """A client LOGIN with a synchronizing literal ({n}: go-ahead) and a non-synchronizing one ({n+})."""
    name = _service(proxy_env, dovecot, "implicit")
    body = _session(proxy_env, name).json()
    host, port = body["addr"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"a1 LOGIN {3}\r\n")
        assert reader.readline().startswith(b"+")
        sock.sendall(b"bob {32+}\r\n%s\r\na2 SELECT INBOX\r\n" % body["client_secret"].encode())
        assert reader.readline().startswith(b"a1 OK")
        lines = []
        while not lines or not lines[-1].startswith(b"a2 "):
            lines.append(reader.readline())
        assert lines[-1].startswith(b"a2 OK")


@pytest.mark.parametrize("kind", ["quoted LOGIN", "AUTHENTICATE PLAIN"])
def test_passwords_that_need_quoting_or_sasl(proxy_env, upstream, kind):
    """Quotes and backslashes go in a quoted LOGIN; a non-ASCII password goes by AUTHENTICATE PLAIN.

    (Which command is sent for which value, and the literal path no Dovecot setup reaches, are checked
    byte by byte in tests/unit/test_imap_postgres_session_parsing.py.)"""
    password = f'q"uo\\te-{unique("pw")}' if kind == "quoted LOGIN" else f"ünï-{unique('pw')}"
    with DovecotServer(upstream.ca, password=password) as peer:
        name = _service(proxy_env, peer, "starttls", password=password)
        client, secret = _connect(proxy_env, name)
        assert client.login("x", secret)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
        client.logout()
        assert any(f"user=<{peer.user}>" in line for line in _login_lines(peer, 1))


def test_logindisabled_without_tls_is_a_clear_auth_error(proxy_env, upstream):
    """On 127.0.0.2 Dovecot says LOGINDISABLED (and hides AUTH=PLAIN) before TLS: mode none cannot log in."""
    with DovecotServer(upstream.ca, host="127.0.0.2") as peer:
        resp = _session(proxy_env, _service(proxy_env, peer, "none"))
        assert resp.status_code == 502
        assert resp.json()["error"] == "imap auth failed: the server disables LOGIN here and offers no AUTH=PLAIN"
        client, secret = _connect(proxy_env, _service(proxy_env, peer, "starttls"))
        assert client.login("x", secret)[0] == "OK"
        client.logout()


def test_wrong_password_is_a_502_without_the_password(proxy_env, dovecot):
    wrong = proxy_env.secrets.new("imap-wrong")
    name = _service(proxy_env, dovecot, "implicit", password=wrong)
    resp = _session(proxy_env, name)
    assert resp.status_code == 502 and resp.json()["error"].startswith("imap auth failed")
    assert wrong not in resp.text


def test_tls_to_a_plain_port_and_unreachable_port_name_the_step(proxy_env, dovecot):
    resp = _session(proxy_env, _service(proxy_env, dovecot, "implicit", port=dovecot.port))
    assert resp.status_code == 502 and resp.json()["error"].startswith("imap TLS failed")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    resp = _session(proxy_env, _service(proxy_env, dovecot, "implicit", port=port))
    assert resp.status_code == 502 and resp.json()["error"].startswith("imap connect failed")


def test_cli_prints_the_address(proxy_env, dovecot):
    name = _service(proxy_env, dovecot, "implicit")
    done = proxy_env.server.cli("imap", name, "--timeout", "10", env={"VAULT_TOKEN": proxy_env.token()})
    assert done.returncode == 0, done.stderr
    addr, secret = done.stdout.splitlines()
    host, port = addr.rsplit(":", 1)
    client = imaplib.IMAP4(host, int(port), timeout=15)
    assert client.noop()[0] == "OK"
    assert client.login("a", secret)[0] == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()
