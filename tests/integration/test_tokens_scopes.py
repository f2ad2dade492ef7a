"""Tokens: scopes, restriction to services, TTL, revocation, listing, headers (SPEC §3, §5)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from helpers import (
    HEX64,
    add_service,
    assert_error,
    bearer,
    bearer_service,
    create_token,
    unique,
)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def proxy_token(unlocked_server) -> str:
    return create_token(unlocked_server, {"scope": "proxy"})["id"]


def test_created_token_object(unlocked_server):
    tok = create_token(unlocked_server, {"scope": "proxy", "name": "agent-7", "ttl": "2h"})
    assert HEX64.fullmatch(tok["id"]), tok
    assert tok["scope"] == "proxy"
    assert tok["name"] == "agent-7"
    lifetime = parse_time(tok["expires_at"]) - parse_time(tok["created_at"])
    assert 7100 <= lifetime.total_seconds() <= 7300, lifetime


ADMIN_ROUTES = [
    ("POST", "/services", {"json": bearer_service("denied", "not-a-real-secret-1")}),
    ("PUT", "/services/denied", {"json": bearer_service("denied", "not-a-real-secret-2")}),
    ("DELETE", "/services/denied", {}),
    ("GET", "/tokens", {}),
    ("POST", "/tokens", {"json": {"scope": "admin"}}),
    ("DELETE", "/tokens/0123456789ab", {}),
    ("GET", "/files", {}),
    ("POST", "/files", {"files": {"file": ("x.txt", b"hello", "text/plain")}, "data": {"name": "x.txt"}}),
    ("GET", "/files/x.txt", {}),
    ("DELETE", "/files/x.txt", {}),
    ("POST", "/auth/lock", {}),
]


def test_proxy_token_gets_403_on_admin_routes(unlocked_server, proxy_token):
    for method, path, kwargs in ADMIN_ROUTES:
        resp = unlocked_server.http.request(method, path, headers=bearer(proxy_token), **kwargs)
        assert_error(resp, 403, "admin scope required")
    # Nothing was created by the refused calls.
    names = [s["name"] for s in unlocked_server.http.get("/services", headers=bearer(proxy_token)).json()]
    assert "denied" not in names


def test_proxy_token_can_read_services(unlocked_server, proxy_token, secrets):
    name = unique("readable")
    add_service(unlocked_server, bearer_service(name, secrets.new("readable-bearer")))
    listing = unlocked_server.http.get("/services", headers=bearer(proxy_token))
    assert listing.status_code == 200, listing.text
    assert name in [s["name"] for s in listing.json()]
    one = unlocked_server.http.get(f"/services/{name}", headers=bearer(proxy_token))
    assert one.status_code == 200, one.text
    assert one.json()["name"] == name


def test_restricted_token_sees_only_its_services(unlocked_server, secrets):
    server = unlocked_server
    allowed, hidden, missing = unique("svc-a"), unique("svc-b"), unique("svc-missing")
    add_service(server, bearer_service(allowed, secrets.new("allowed-bearer")))
    add_service(server, bearer_service(hidden, secrets.new("hidden-bearer")))
    tok = create_token(server, {"scope": "proxy", "services": [allowed], "name": "restricted"})
    assert tok["services"] == [allowed]
    headers = bearer(tok["id"])

    listing = server.http.get("/services", headers=headers)
    assert listing.status_code == 200, listing.text
    assert [s["name"] for s in listing.json()] == [allowed]
    assert server.http.get(f"/services/{allowed}", headers=headers).status_code == 200

    # A service outside the token's list is indistinguishable from one that does not exist.
    assert_same_404(server, "/services/{}", hidden, missing, headers)


def assert_same_404(server, template: str, hidden: str, missing: str, headers: dict) -> None:
    hidden_resp = server.http.get(template.format(hidden), headers=headers)
    missing_resp = server.http.get(template.format(missing), headers=headers)
    assert_error(hidden_resp, 404, f'service "{hidden}" not found')
    assert_error(missing_resp, 404, f'service "{missing}" not found')
    assert hidden_resp.headers.get("content-type") == missing_resp.headers.get("content-type")


def test_restricted_token_cannot_proxy_other_services(unlocked_server, secrets):
    server = unlocked_server
    allowed, hidden, missing = unique("svc-a"), unique("svc-b"), unique("svc-missing")
    add_service(server, bearer_service(allowed, secrets.new("allowed-proxy-bearer")))
    add_service(server, bearer_service(hidden, secrets.new("hidden-proxy-bearer")))
    tok = create_token(server, {"scope": "proxy", "services": [allowed]})
    assert_same_404(server, "/proxy/{}/v1/models", hidden, missing, bearer(tok["id"]))


def test_services_restriction_only_for_proxy_scope(unlocked_server):
    resp = unlocked_server.http.post(
        "/tokens", json={"scope": "admin", "services": ["x"]}, headers=unlocked_server.admin_headers()
    )
    assert_error(resp, 400)


def test_bad_token_requests_are_400(unlocked_server):
    for body in (
        {"scope": "root"},
        {"scope": "proxy", "ttl": "forever"},
        {"scope": 5},
        {"scope": "proxy", "ttl": "-5m"},
    ):
        resp = unlocked_server.http.post("/tokens", json=body, headers=unlocked_server.admin_headers())
        assert_error(resp, 400)


def test_token_ttl_expires(unlocked_server):
    tok = create_token(unlocked_server, {"scope": "proxy", "ttl": "2s"})
    lifetime = parse_time(tok["expires_at"]) - parse_time(tok["created_at"])
    assert 1 <= lifetime.total_seconds() <= 3, lifetime
    assert unlocked_server.http.get("/services", headers=bearer(tok["id"])).status_code == 200

    time.sleep(3.2)

    resp = unlocked_server.http.get("/services", headers=bearer(tok["id"]))
    msg = assert_error(resp, 401)
    assert msg in ("token expired", "invalid token"), msg


def test_server_token_ttl_flag(start_server, secrets):
    server = start_server(token_ttl="2s")
    token = server.unlock(secrets.new("ttl-pw"))
    assert server.http.get("/services", headers=bearer(token)).status_code == 200
    time.sleep(3.2)
    msg = assert_error(server.http.get("/services", headers=bearer(token)), 401)
    assert msg in ("token expired", "invalid token"), msg


def test_revoke_by_id_and_prefix(unlocked_server):
    server = unlocked_server
    by_id, by_8, by_12, survivor = (create_token(server, {"scope": "proxy"})["id"] for _ in range(4))
    admin = server.admin_headers()

    for ref in (by_id, by_8[:8], by_12[:12]):
        resp = server.http.delete(f"/tokens/{ref}", headers=admin)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"status": "revoked"}
    for dead in (by_id, by_8, by_12):
        assert_error(server.http.get("/services", headers=bearer(dead)), 401, "invalid token")
    assert server.http.get("/services", headers=bearer(survivor)).status_code == 200

    assert_error(
        server.http.delete(f"/tokens/{survivor[:7]}", headers=admin),
        400,
        "token prefix must be at least 8 characters",
    )
    assert_error(server.http.delete(f"/tokens/{by_id}", headers=admin), 404, "token not found")
    unknown = next(c * 64 for c in "0123456789abcdef" if not survivor.startswith(c))
    assert_error(server.http.delete(f"/tokens/{unknown}", headers=admin), 404, "token not found")
    assert_error(server.http.delete(f"/tokens/{unknown[:10]}", headers=admin), 404, "token not found")
    # The short prefix and unknown ids revoked nothing.
    assert server.http.get("/services", headers=bearer(survivor)).status_code == 200


def test_list_tokens_never_shows_a_full_token(unlocked_server):
    server = unlocked_server
    proxy = create_token(server, {"scope": "proxy", "services": ["svc-x"], "name": "lister"})

    resp = server.http.get("/tokens", headers=server.admin_headers())

    assert resp.status_code == 200, resp.text
    assert not HEX64.search(resp.text), resp.text
    assert server.admin_token not in resp.text and proxy["id"] not in resp.text
    entries = resp.json()
    assert {e["id_prefix"] for e in entries} >= {server.admin_token[:12], proxy["id"][:12]}
    for entry in entries:
        assert len(entry["id_prefix"]) == 12
        assert entry["scope"] in ("admin", "proxy")
        assert entry["created_at"] and entry["expires_at"]
    mine = next(e for e in entries if e["id_prefix"] == proxy["id"][:12])
    assert mine["name"] == "lister" and mine["services"] == ["svc-x"]
    created = [parse_time(e["created_at"]) for e in entries]
    assert created == sorted(created)


def test_x_vault_token_header(unlocked_server, secrets):
    server = unlocked_server
    headers = {"X-Vault-Token": server.admin_token}
    assert server.http.get("/services", headers=headers).status_code == 200
    resp = server.http.post("/services", json=bearer_service(unique("xvt"), secrets.new("xvt-bearer")), headers=headers)
    assert resp.status_code == 201, resp.text


def test_missing_or_garbage_token(unlocked_server):
    cases = [
        ({}, "authorization required"),
        ({"Authorization": "Bearer not-a-token"}, "invalid token"),
        ({"Authorization": "Bearer " + "0" * 64}, "invalid token"),
        ({"X-Vault-Token": "garbage"}, "invalid token"),
    ]
    for headers, message in cases:
        for path in ("/services", "/tokens"):
            assert_error(unlocked_server.http.get(path, headers=headers), 401, message)
