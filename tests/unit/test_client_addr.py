"""SDK pieces that need no server: address parsing, the session file, token resolution, errors."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from vault_proxy.client import calls
from vault_proxy.client.addr import DEFAULT_ADDR, is_loopback_host, parse_addr
from vault_proxy.client.errors import VaultAddressError, VaultConnectionError, VaultError
from vault_proxy.client.session import (
    read_session_token,
    remove_session,
    resolve_token,
    session_path,
    write_session_token,
)

# --------------------------------------------------------------------------- addresses


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VAULT_* from the caller's shell; HOME is a fresh temp dir."""
    for key in list(os.environ):
        if key.startswith("VAULT_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_default_address() -> None:
    addr = parse_addr()
    assert addr.base_url == DEFAULT_ADDR == "http://127.0.0.1:8390"
    assert addr.uds is None


def test_env_address_and_explicit_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9000")
    assert parse_addr().base_url == "http://127.0.0.1:9000"
    assert parse_addr("http://localhost:9001").base_url == "http://localhost:9001"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:8390", "http://127.0.0.1:8390"),
        ("http://127.0.0.1:8390/", "http://127.0.0.1:8390"),
        ("HTTP://LOCALHOST:8390", "http://localhost:8390"),
        ("http://[::1]:8390", "http://[::1]:8390"),
        ("127.0.0.1:8390", "http://127.0.0.1:8390"),
        ("https://vault.example.com", "https://vault.example.com"),
        ("https://vault.example.com:8443/", "https://vault.example.com:8443"),
        ("https://10.0.0.5:8443", "https://10.0.0.5:8443"),
        ("  http://127.0.0.2:1234  ", "http://127.0.0.2:1234"),
    ],
)
def test_tcp_addresses(raw: str, expected: str) -> None:
    addr = parse_addr(raw)
    assert addr.base_url == expected
    assert addr.display == expected
    assert addr.uds is None


@pytest.mark.parametrize("raw", ["unix:/run/vault.sock", "unix:///run/vault.sock"])
def test_unix_socket_address(raw: str) -> None:
    addr = parse_addr(raw)
    assert addr.uds == "/run/vault.sock"
    assert addr.base_url == "http://localhost"
    assert addr.display == "unix:/run/vault.sock"
    assert isinstance(addr.transport(), httpx.HTTPTransport)
    assert isinstance(addr.async_transport(), httpx.AsyncHTTPTransport)


@pytest.mark.parametrize(
    "raw",
    ["unix:relative.sock", "unix:", "ftp://127.0.0.1:21", "http://", "http://127.0.0.1:notaport",
     "http://user:pw@127.0.0.1:8390"],
)  # fmt: skip
def test_malformed_addresses(raw: str) -> None:
    with pytest.raises(VaultAddressError) as info:
        parse_addr(raw)
    assert isinstance(info.value, ValueError)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize("raw", ["http://10.1.2.3:8390", "http://vault.example.com", "192.168.1.4:8390"])
def test_plain_http_to_remote_host_refused(raw: str) -> None:
    with pytest.raises(VaultAddressError, match="refusing plain http"):
        parse_addr(raw)
    assert parse_addr(raw, allow_insecure=True).base_url.startswith("http://")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("api.localhost", True), ("127.0.0.1", True), ("127.9.9.9", True),
     ("::1", True), ("[::1]", True), ("10.0.0.1", False), ("example.com", False), ("0.0.0.0", False)],
)  # fmt: skip
def test_loopback_classification(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# --------------------------------------------------------------------------- session file


def test_session_path_honours_home(clean_env: Path) -> None:
    assert session_path() == clean_env / ".vault-proxy" / "session"


def test_session_file_written_0600_in_0700_dir(clean_env: Path) -> None:
    old = os.umask(0)  # the modes must not depend on the umask
    try:
        path = write_session_token("a" * 64)
    finally:
        os.umask(old)
    assert path == clean_env / ".vault-proxy" / "session"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_session_token() == "a" * 64
    assert [p.name for p in path.parent.iterdir()] == ["session"]  # no temp file left behind


def test_session_file_overwrite_tightens_mode(clean_env: Path) -> None:
    path = clean_env / ".vault-proxy" / "session"
    path.parent.mkdir(mode=0o700)
    path.write_text("old-token\n")
    path.chmod(0o644)
    write_session_token("b" * 64)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "b" * 64 + "\n"


def test_session_read_missing_or_empty(clean_env: Path) -> None:
    assert read_session_token() is None
    path = write_session_token("c" * 64)
    path.write_text("  \n")
    assert read_session_token() is None


def test_remove_session(clean_env: Path) -> None:
    assert remove_session() is False
    write_session_token("d" * 64)
    assert remove_session() is True
    assert not session_path().exists()


def test_token_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_token() is None
    write_session_token("from-session")
    assert resolve_token() == "from-session"
    monkeypatch.setenv("VAULT_TOKEN", "from-env")
    assert resolve_token() == "from-env"
    assert resolve_token("explicit") == "explicit"
    monkeypatch.setenv("VAULT_TOKEN", "")  # empty env var falls through to the session file
    assert resolve_token() == "from-session"


def test_client_sends_resolved_token_and_never_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from vault_proxy import VaultClient

    monkeypatch.setenv("VAULT_TOKEN", "e" * 64)
    with VaultClient() as client:
        assert client.token == "e" * 64
        headers = client._config.headers({"Authorization": "Bearer user-supplied"})
        assert headers["authorization"] == "Bearer " + "e" * 64  # the vault token always wins
        assert "e" * 64 not in repr(client)
        client.token = None
        assert "authorization" not in client._config.headers()


# --------------------------------------------------------------------------- errors and calls


def test_vault_error_shape() -> None:
    err = VaultError(404, 'service "x" not found')
    assert str(err) == 'service "x" not found'
    assert err.status_code == 404
    assert repr(err) == "VaultError(404, 'service \"x\" not found')"
    conn = VaultConnectionError("http://127.0.0.1:1")
    assert isinstance(conn, VaultError) and conn.status_code == 0
    assert str(conn) == "cannot reach vault-server at http://127.0.0.1:1"


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers or {})


def test_error_message_from_json_and_fallbacks() -> None:
    assert calls.error_message(_response(401, b'{"error": "invalid token"}')) == "invalid token"
    assert calls.error_message(_response(502, b"Bad Gateway")) == "Bad Gateway"
    assert calls.error_message(_response(500, b"<html>\n<body>oops</body>\n</html>")) == (
        "HTTP 500 Internal Server Error"
    )
    with pytest.raises(VaultError) as info:
        calls.decode(calls.list_services(), _response(503, b'{"error": "vault is locked"}'))
    assert (info.value.status_code, info.value.message) == (503, "vault is locked")
    assert calls.decode(calls.get_file("f"), _response(200, b"\x00raw")) == b"\x00raw"
    assert calls.decode(calls.list_files(), _response(200, b"[]")) == []


def test_vault_error_header_detection() -> None:
    assert calls.is_vault_error(_response(404, b"{}", {"X-Vault-Error": "1"}))
    assert not calls.is_vault_error(_response(404, b"{}"))


def test_names_are_percent_encoded_as_one_segment() -> None:
    assert calls.get_file("a b/../c?d#e%").path == "/files/a%20b%2F..%2Fc%3Fd%23e%25"
    assert calls.revoke_token("0123abcd").path == "/tokens/0123abcd"
    assert calls.proxy_url("openai", "/v1/models?x=1") == "/proxy/openai/v1/models?x=1"
    assert calls.proxy_url("gh", "repos/a%2Fb") == "/proxy/gh/repos/a%2Fb"
    with pytest.raises(ValueError):
        calls.get_service("")


def test_create_token_body() -> None:
    body = calls.create_token("proxy", ["a", "b"], "2h", "agent-7").json
    assert body == {"scope": "proxy", "services": ["a", "b"], "ttl": "2h", "name": "agent-7"}
    assert calls.create_token("admin").json == {"scope": "admin"}
    assert calls.create_token(ttl=timedelta(minutes=90)).json["ttl"] == "5400s"
    assert calls.create_token(ttl=45).json["ttl"] == "45s"
    with pytest.raises(ValueError):
        calls.create_token(ttl=0)


def test_upload_guesses_mime_type() -> None:
    assert calls.upload_file("key.json", b"{}").files["file"][2] == "application/json"
    assert calls.upload_file("blob", b"x").files["file"][2] == "application/octet-stream"
    assert calls.upload_file("blob", b"x", "text/plain").files["file"][2] == "text/plain"


def test_proxy_kwargs_body_forms() -> None:
    assert calls.proxy_kwargs(data=b"raw")["content"] == b"raw"
    assert calls.proxy_kwargs(data={"a": "1"})["data"] == {"a": "1"}
    assert calls.proxy_kwargs(json={"a": 1})["json"] == {"a": 1}
