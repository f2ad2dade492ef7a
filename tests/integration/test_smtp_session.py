"""SMTP sessions against a real SMTP server with AUTH (aiosmtpd, STARTTLS and implicit TLS) with smtplib."""

from __future__ import annotations

import base64
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from helpers import unique
from smtp_server import SmtpServer


@pytest.fixture(scope="module")
def smtp_peer(upstream, tmp_path_factory) -> SmtpServer:
    peer = SmtpServer(Path(tmp_path_factory.mktemp("smtp")), upstream.ca).start()
    yield peer
    peer.stop()


def _service(env, peer: SmtpServer, mode: str, password: str | None = None) -> str:
    env.secrets.add(peer.password)
    port = peer.port if mode == "starttls" else peer.tls_port
    auth = {"type": "smtp", "smtp_host": peer.host, "smtp_port": port, "smtp_user": peer.user,
            "smtp_password": password or peer.password, "smtp_tls": mode}  # fmt: skip
    name = unique("smtp")
    resp = env.server.http.post("/services", json={"name": name, "auth": auth}, headers=env.server.admin_headers())
    assert resp.status_code == 201, resp.text
    return name


def _session(env, name: str):
    return env.server.http.post(f"/smtp/{name}/session", headers={"Authorization": f"Bearer {env.token()}"})


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_smtplib_sends_through_an_authenticated_session(proxy_env, smtp_peer, mode):
    name = _service(proxy_env, smtp_peer, mode)
    resp = _session(proxy_env, name)
    assert resp.status_code == 200, resp.text
    host, port = resp.json()["addr"].rsplit(":", 1)
    subject = unique("subject")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "agent@example.com", "you@example.com", subject
    message.set_content("sent through the vault")
    with smtplib.SMTP(host, int(port), timeout=15) as client:
        client.login("anything", resp.json()["client_secret"])
        client.send_message(message)
    got = [m for m in smtp_peer.messages if subject in m.data]
    assert len(got) == 1 and got[0].auth_user == smtp_peer.user and got[0].tls is True
    assert got[0].rcpt_tos == ["you@example.com"]


def test_mail_before_auth_is_refused_locally(proxy_env, smtp_peer):
    name = _service(proxy_env, smtp_peer, "starttls")
    host, port = _session(proxy_env, name).json()["addr"].rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=15) as client:
        client.ehlo()
        assert client.has_extn("auth")
        code, _ = client.docmd("MAIL FROM:<a@example.com>")
        assert code == 530


def test_auth_login_with_initial_response(proxy_env, smtp_peer):
    name = _service(proxy_env, smtp_peer, "starttls")
    body = _session(proxy_env, name).json()
    host, port = body["addr"].rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=15) as client:
        client.ehlo()
        code, _ = client.docmd("AUTH LOGIN", "dXNlcg==")
        assert code == 334
        code, _ = client.docmd(base64.b64encode(body["client_secret"].encode()).decode())
        assert code == 235
        code, _ = client.docmd("MAIL FROM:<a@example.com>")
        assert code == 250


def test_wrong_password_is_a_502(proxy_env, smtp_peer):
    wrong = proxy_env.secrets.new("smtp-wrong")
    name = _service(proxy_env, smtp_peer, "starttls", password=wrong)
    resp = _session(proxy_env, name)
    assert resp.status_code == 502 and resp.json()["error"].startswith("smtp auth failed")
    assert wrong not in resp.text
