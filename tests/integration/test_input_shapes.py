"""Strict API input and the Go tool's stored shapes, against a real server (SPEC §3, §7, §8)."""

from __future__ import annotations

import json

from conftest import ALLOW_LOOPBACK
from helpers import unique
from test_unlock_lock import go_tool_vault

EXPIRY = 4102444800  # 2100-01-01T00:00:00Z, as the Go tool writes it


def test_a_string_is_not_a_boolean(unlocked_server, secrets):
    http, admin = unlocked_server.http, unlocked_server.admin_headers()
    name = unique("strict")
    body = {"name": name, "base_url": "https://api.example.com", "auth": {"type": "bearer", "token": secrets.new("t")},
            "tls_skip_verify": "yes"}  # fmt: skip
    resp = http.post("/services", json=body, headers=admin)
    assert resp.status_code == 400 and "tls_skip_verify" in resp.json()["error"], resp.text
    assert http.get(f"/services/{name}", headers=admin).status_code == 404
    body["tls_skip_verify"] = True
    assert http.post("/services", json=body, headers=admin).status_code == 201


def test_a_token_needs_its_scope(unlocked_server):
    http, admin = unlocked_server.http, unlocked_server.admin_headers()
    before = len(http.get("/tokens", headers=admin).json())
    for body in ({}, {"scope": None}, {"ttl": "1h"}):
        resp = http.post("/tokens", json=body, headers=admin)
        assert resp.status_code == 400 and "scope" in resp.json()["error"], resp.text
    resp = http.post("/tokens", content=b"", headers=admin)
    assert resp.status_code == 400 and "scope" in resp.json()["error"], resp.text
    for field, value in (("scope", 1), ("ttl", True), ("name", 5), ("services", "svc")):
        resp = http.post("/tokens", json={"scope": "proxy", field: value}, headers=admin)
        assert resp.status_code == 400 and field in resp.json()["error"], resp.text
    assert len(http.get("/tokens", headers=admin).json()) == before


def _go_vault(server, password: str, services: dict) -> None:
    vault = server.data_dir / "vault.enc"
    vault.write_bytes(go_tool_vault(password, json.dumps({"services": services, "files": {}}).encode()))
    vault.chmod(0o600)


def test_go_vault_oauth_service_with_unix_expiry_is_usable(start_server, upstream, secrets):
    server = start_server("--ca-file", str(upstream.ca_path), *ALLOW_LOOPBACK)
    password = secrets.new("go-master-pw")
    access = secrets.new("go-access")
    auth = {"type": "oauth2_client", "client_id": "go-client", "client_secret": secrets.new("go-cs"),
            "token_url": "https://oauth.example.com/token", "refresh_token": secrets.new("go-rt"),
            "access_token": access, "expires_at": EXPIRY}  # fmt: skip
    _go_vault(server, password, {"go-oauth": {"name": "go-oauth", "base_url": upstream.url, "auth": auth}})
    server.unlock(password)
    upstream.forbidden.add(server.admin_token or "")
    admin = server.admin_headers()

    info = server.http.get("/services/go-oauth", headers=admin).json()
    assert info["expires_at"] == "2100-01-01T00:00:00Z" and info["token_status"] == "valid", info
    assert "error" not in info
    assert [s["name"] for s in server.http.get("/services", headers=admin).json()] == ["go-oauth"]
    mark = upstream.mark()
    resp = server.http.get(f"{server.addr}/proxy/go-oauth/echo", headers=admin)
    assert resp.status_code == 200, resp.text
    seen = upstream.since(mark)
    assert [v for k, v in seen[-1].headers if k.lower() == "authorization"] == [f"Bearer {access}"]


def test_unreadable_go_entry_is_listed_shown_replaced_and_removed(server, secrets):
    password = secrets.new("go-master-pw")
    broken = {"name": "broken", "base_url": "https://api.example.com", "auth": {"type": "bearer"}}
    good = {
        "name": "good",
        "base_url": "https://api.example.com",
        "auth": {"type": "bearer", "token": secrets.new("g")},
    }
    _go_vault(server, password, {"broken": broken, "good": good, "gone": dict(broken, name="gone")})
    server.unlock(password)
    http, admin = server.http, server.admin_headers()
    assert "broken" in server.log_text() and "bearer auth requires token" in server.log_text()

    listed = {s["name"]: s for s in http.get("/services", headers=admin).json()}
    assert sorted(listed) == ["broken", "gone", "good"]
    assert listed["broken"]["error"] == "bearer auth requires token" and "error" not in listed["good"]
    shown = http.get("/services/broken", headers=admin)
    assert shown.status_code == 200 and shown.json() == listed["broken"]
    # Unusable until replaced: the proxy says why instead of "not found".
    proxy_token = http.post("/tokens", json={"scope": "proxy"}, headers=admin).json()["id"]
    called = http.get(f"{server.addr}/proxy/broken/x", headers={"Authorization": f"Bearer {proxy_token}"})
    assert called.status_code in (400, 404, 503) and called.status_code != 500

    fixed = dict(broken, auth={"type": "bearer", "token": secrets.new("fixed")})
    resp = http.put("/services/broken", json=fixed, headers=admin)
    assert resp.status_code == 200 and "error" not in resp.json(), resp.text
    assert http.delete("/services/gone", headers=admin).json() == {"status": "deleted"}
    assert http.get("/services/gone", headers=admin).status_code == 404

    server.restart()
    server.unlock(password)
    listed = {s["name"]: s for s in server.http.get("/services", headers=server.admin_headers()).json()}
    assert sorted(listed) == ["broken", "good"] and not any("error" in s for s in listed.values())
