"""The exact requests the Go tool's own ``vault-cli`` and Go SDK send, and what they read back (SPEC §3-5, §11).

Those clients decode fixed JSON keys and check fixed success codes, so a renamed key or a 200 where they
expect 201 breaks them silently. Each exchange here is sent as raw HTTP (no SDK of ours in between) and
its status, content type and key set are pinned.
"""

from __future__ import annotations

import re

import httpx
from helpers import unique

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _json(resp: httpx.Response, status: int) -> object:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()


def _error(resp: httpx.Response, status: int, message: str) -> None:
    assert _json(resp, status) == {"error": message}


def test_unlock_tokens_and_lock_shapes(server, secrets):
    http = server.http
    assert _json(http.get("/health"), 200) == {"status": "locked"}
    unlocked = _json(http.post("/auth/unlock", json={"password": secrets.new("master-pw")}), 200)
    assert {"id", "scope", "created_at", "expires_at"} <= unlocked.keys() and unlocked["scope"] == "admin"
    assert (
        HEX64.match(unlocked["id"]) and RFC3339.match(unlocked["created_at"]) and RFC3339.match(unlocked["expires_at"])
    )
    admin = {"Authorization": f"Bearer {unlocked['id']}"}
    assert _json(http.get("/health"), 200) == {"status": "unlocked"}

    created = _json(http.post("/tokens", json={"scope": "proxy"}, headers=admin), 201)
    assert {"id", "scope", "created_at", "expires_at"} <= created.keys() and created["scope"] == "proxy"
    listed = _json(http.get("/tokens", headers=admin), 200)
    assert isinstance(listed, list) and all("id" not in t for t in listed)
    assert all({"id_prefix", "scope", "created_at", "expires_at"} <= t.keys() for t in listed)
    assert created["id"][:12] in {t["id_prefix"] for t in listed}
    # The Go tool's header name is accepted too.
    assert _json(http.get("/tokens", headers={"X-Vault-Token": unlocked["id"]}), 200) == listed
    assert _json(http.delete(f"/tokens/{created['id'][:12]}", headers=admin), 200) == {"status": "revoked"}

    _error(http.get("/tokens"), 401, "authorization required")
    _error(http.get("/tokens", headers={"Authorization": "Bearer " + "0" * 64}), 401, "invalid token")
    proxy = _json(http.post("/tokens", json={"scope": "proxy"}, headers=admin), 201)["id"]
    _error(http.get("/tokens", headers={"Authorization": f"Bearer {proxy}"}), 403, "admin scope required")
    _error(http.patch("/tokens", headers=admin), 405, "method not allowed")

    assert _json(http.post("/auth/lock", headers=admin), 200) == {"status": "locked"}
    _error(http.get("/services", headers=admin), 401, "invalid token")


def test_service_crud_shapes(unlocked_server, secrets):
    http, admin = unlocked_server.http, unlocked_server.admin_headers()
    name = unique("svc")
    body = {"name": name, "base_url": "https://api.example.com", "auth": {"type": "bearer", "token": secrets.new("t")}}
    info = _json(http.post("/services", json=body, headers=admin), 201)
    assert info == {"name": name, "base_url": "https://api.example.com", "auth_type": "bearer"}
    assert _json(http.get(f"/services/{name}", headers=admin), 200) == info
    assert info in _json(http.get("/services", headers=admin), 200)
    body["base_url"] = "https://api2.example.com"
    assert _json(http.put(f"/services/{name}", json=body, headers=admin), 200)["base_url"] == body["base_url"]
    assert _json(http.delete(f"/services/{name}", headers=admin), 200) == {"status": "deleted"}
    _error(http.get(f"/services/{name}", headers=admin), 404, f'service "{name}" not found')
    _error(http.post("/services", json={"name": name, "base_url": "https://x.example", "auth": {"type": "bearer"}},
                     headers=admin), 400, "bearer auth requires token")  # fmt: skip


def test_file_shapes(unlocked_server):
    http, admin = unlocked_server.http, unlocked_server.admin_headers()
    data = bytes(range(256)) * 4
    stored = _json(http.post("/files", data={"name": "key.pem"}, files={"file": ("key.pem", data)}, headers=admin), 201)
    assert stored.keys() == {"name", "mime_type", "size"} and stored["name"] == "key.pem" and stored["size"] == 1024
    assert _json(http.get("/files", headers=admin), 200) == [stored]
    raw = http.get("/files/key.pem", headers=admin)
    assert raw.status_code == 200 and raw.content == data
    assert _json(http.delete("/files/key.pem", headers=admin), 200) == {"status": "deleted"}
    _error(http.get("/files/key.pem", headers=admin), 404, 'file "key.pem" not found')


def test_proxy_and_session_routes_answer_as_the_go_clients_expect(unlocked_server):
    http, admin = unlocked_server.http, unlocked_server.admin_headers()
    _error(http.get("/proxy/nowhere/v1/models", headers=admin), 404, 'service "nowhere" not found')
    for proto in ("imap", "smtp", "redis", "postgres"):
        _error(http.post(f"/{proto}/nowhere/session", headers=admin), 404, 'service "nowhere" not found')
    _error(http.post("/ssh/nowhere/exec", json={"command": "true"}, headers=admin), 404, 'service "nowhere" not found')
