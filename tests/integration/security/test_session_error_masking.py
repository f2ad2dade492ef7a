"""A hostile mail server that echoes the SASL token the vault sent (base64 of ``\\0user\\0password``)
in its failure text: the 502 and the audit line must hold no form of the password (red-team round 3)."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator

import pytest
from helpers import unique

USER = "alice"


class EchoingSmtp:
    """Plain SMTP on 127.0.0.1: EHLO offers AUTH PLAIN; any AUTH is refused quoting what it got, or,
    with ``accept=True``, accepted; ``greet_after`` seconds pass before the greeting."""

    def __init__(self, *, accept: bool = False, greet_after: float = 0.0) -> None:
        self._accept, self._greet_after = accept, greet_after
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def start(self) -> EchoingSmtp:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = server.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self._greet_after)
        writer.write(b"220 mail ready\r\n")
        try:
            for _ in range(10):  # bounded
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line:
                    break
                if line.upper().startswith((b"EHLO", b"HELO")):
                    writer.write(b"250-mail\r\n250 AUTH PLAIN LOGIN\r\n")
                elif line.upper().startswith(b"AUTH") and self._accept:
                    writer.write(b"235 2.7.0 ok\r\n")
                elif line.upper().startswith(b"AUTH"):
                    writer.write(b"535 5.7.8 failed for token " + line.split()[-1] + b" (" + line.strip() + b")\r\n")
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def echoing_smtp() -> Iterator[EchoingSmtp]:
    peer = EchoingSmtp().start()
    yield peer
    peer.stop()


def test_a_server_echoing_the_sasl_token_gets_no_form_of_the_password_out(proxy_env, echoing_smtp):
    password = proxy_env.secrets.new("smtp-pw")
    plain = base64.b64encode(f"\0{USER}\0{password}".encode()).decode()
    proxy_env.secrets.add(plain)
    proxy_env.secrets.add(plain.rstrip("="))
    name = unique("mail")
    body = {"name": name, "auth": {"type": "smtp", "smtp_host": "127.0.0.1", "smtp_port": echoing_smtp.port,
                                   "smtp_user": USER, "smtp_password": password, "smtp_tls": "none"}}  # fmt: skip
    assert proxy_env.server.http.post("/services", json=body, headers=proxy_env.server.admin_headers()).status_code == 201
    resp = proxy_env.server.http.post(f"/smtp/{name}/session", headers={"Authorization": f"Bearer {proxy_env.token()}"})
    assert resp.status_code == 502, resp.text
    assert "535" in resp.json()["error"] and plain not in resp.text and password not in resp.text
    audit = proxy_env.server.audit_path.read_text()
    assert plain not in audit and plain.rstrip("=") not in audit and password not in audit


def test_a_token_revoked_while_its_session_logs_in_gets_no_session(proxy_env):
    """Red-team round 3: sessions were tracked only after the login, so a revoke during a slow login
    still handed out a working address."""
    import concurrent.futures

    from helpers import create_token

    peer = EchoingSmtp(accept=True, greet_after=1.5).start()
    try:
        name = unique("mail")
        body = {"name": name, "auth": {"type": "smtp", "smtp_host": "127.0.0.1", "smtp_port": peer.port,
                                       "smtp_user": USER, "smtp_password": proxy_env.secrets.new("pw"),
                                       "smtp_tls": "none"}}  # fmt: skip
        assert proxy_env.server.http.post("/services", json=body, headers=proxy_env.server.admin_headers()).status_code == 201
        token = create_token(proxy_env.server, {"scope": "proxy", "services": [name]})["id"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(lambda: proxy_env.server.new_client(timeout=30).post(
                f"/smtp/{name}/session", headers={"Authorization": f"Bearer {token}"}))  # fmt: skip
            import time

            time.sleep(0.5)
            revoked = proxy_env.server.http.delete(f"/tokens/{token[:8]}", headers=proxy_env.server.admin_headers())
            assert revoked.status_code == 200
            resp = future.result(timeout=30)
        assert resp.status_code == 401, resp.text
    finally:
        peer.stop()
