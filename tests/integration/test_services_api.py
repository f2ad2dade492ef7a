"""Services API: every auth type, validation, ServiceInfo without secrets, HTTP conventions (SPEC §3, §4, §8)."""

from __future__ import annotations

import json

import pytest
from helpers import (
    add_service,
    assert_error,
    assert_security_headers,
    bearer,
    bearer_service,
    pem_secret_line,
    service_account_json,
    service_names,
    ssh_fingerprint,
    ssh_host_public_key,
    ssh_private_key_pem,
    unique,
    upload_file,
)

API = "https://api.example.com/v1"


def upload_ok(server, name: str, data: bytes, mime: str = "application/octet-stream") -> None:
    resp = upload_file(server, name, data, mime)
    assert resp.status_code == 201, resp.text


def valid_examples(server, secrets) -> dict[str, tuple[dict, dict]]:
    """auth type -> (service body, non-secret fields expected in its ServiceInfo)."""
    sa_file, key_file = unique("sa-key") + ".json", unique("id-ed25519")
    passphrase = secrets.new("ssh-passphrase")
    key_pem = ssh_private_key_pem(passphrase)
    secrets.add(pem_secret_line(key_pem))
    upload_ok(server, sa_file, service_account_json(secrets), "application/json")
    upload_ok(server, key_file, key_pem)
    return {
        "bearer": (
            {"name": "ex-bearer", "base_url": API, "auth": {"type": "bearer", "token": secrets.new("bearer")}},
            {"base_url": API},
        ),
        "header": (
            {
                "name": "ex-header",
                "base_url": API,
                "auth": {"type": "header", "header_name": "X-Api-Key", "header_value": secrets.new("header")},
            },
            {"header_name": "X-Api-Key"},
        ),
        "basic": (
            {
                "name": "ex-basic",
                "base_url": API,
                "auth": {"type": "basic", "username": "alice", "password": secrets.new("basic-pw")},
            },
            {"username": "alice"},
        ),
        "url": (
            {
                "name": "ex-url",
                "base_url": "https://api.telegram.example/bot{token}",
                "auth": {"type": "url", "token": secrets.new("urltoken")},
            },
            {},
        ),
        "oauth2_client": (
            {
                "name": "ex-oauth2",
                "base_url": "https://www.googleapis.example",
                "auth": {
                    "type": "oauth2_client",
                    "client_id": "client-id-123.apps.example",
                    "client_secret": secrets.new("oauth-client-secret"),
                    "token_url": "https://oauth2.example.com/token",
                    "refresh_token": secrets.new("oauth-refresh"),
                    "access_token": secrets.new("oauth-access"),
                    "scopes": ["https://www.googleapis.com/auth/gmail.readonly"],
                },
            },
            {"scopes": ["https://www.googleapis.com/auth/gmail.readonly"]},
        ),
        "service_account": (
            {
                "name": "ex-sa",
                "base_url": "https://bigquery.googleapis.example",
                "auth": {
                    "type": "service_account",
                    "file_ref": sa_file,
                    "sa_scopes": ["https://www.googleapis.com/auth/bigquery"],
                },
            },
            {"file_ref": sa_file, "sa_scopes": ["https://www.googleapis.com/auth/bigquery"]},
        ),
        "ssh_key": (
            {
                "name": "ex-ssh",
                "auth": {
                    "type": "ssh_key",
                    "ssh_host": "ssh.example.com",
                    "ssh_user": "deploy",
                    "ssh_key_file_ref": key_file,
                    "ssh_key_passphrase": passphrase,
                    "ssh_allowed_commands": ["uptime", "ls"],
                },
            },
            {
                "ssh_host": "ssh.example.com",
                "ssh_user": "deploy",
                "ssh_key_file_ref": key_file,
                "ssh_allowed_commands": ["uptime", "ls"],
            },
        ),
        "imap": (
            {
                "name": "ex-imap",
                "auth": {
                    "type": "imap",
                    "imap_host": "imap.example.com",
                    "imap_user": "bob@example.com",
                    "imap_password": secrets.new("imap-pw"),
                },
            },
            {"imap_host": "imap.example.com", "imap_user": "bob@example.com"},
        ),
        "smtp": (
            {
                "name": "ex-smtp",
                "auth": {
                    "type": "smtp",
                    "smtp_host": "smtp.example.com",
                    "smtp_user": "bob@example.com",
                    "smtp_password": secrets.new("smtp-pw"),
                },
            },
            {"smtp_host": "smtp.example.com", "smtp_user": "bob@example.com"},
        ),
        "redis": (
            {
                "name": "ex-redis",
                "auth": {
                    "type": "redis",
                    "redis_host": "redis.example.com",
                    "redis_username": "app",
                    "redis_password": secrets.new("redis-pw"),
                    "redis_db": 2,
                },
            },
            {"redis_host": "redis.example.com", "redis_username": "app", "redis_db": 2},
        ),
        "postgres": (
            {
                "name": "ex-postgres",
                "auth": {
                    "type": "postgres",
                    "postgres_host": "db.example.com",
                    "postgres_user": "app",
                    "postgres_password": secrets.new("pg-pw"),
                    "postgres_db": "appdb",
                },
            },
            {"postgres_host": "db.example.com", "postgres_user": "app", "postgres_db": "appdb"},
        ),
    }


DEFAULT_PORTS = {
    "ssh_key": ("ssh_port", 22),
    "imap": ("imap_port", 993),
    "smtp": ("smtp_port", 587),
    "redis": ("redis_port", 6379),
    "postgres": ("postgres_port", 5432),
}


def assert_no_secret(info: object, secrets) -> None:
    text = json.dumps(info)
    for value in secrets.secrets:
        assert value not in text, f"ServiceInfo leaks {value!r}: {text}"


def test_every_auth_type_round_trips_without_secrets(unlocked_server, secrets):
    server = unlocked_server
    examples = valid_examples(server, secrets)
    assert len(examples) == 11

    for auth_type, (body, expected) in examples.items():
        info = add_service(server, body)
        assert_no_secret(info, secrets)
        assert info["name"] == body["name"], info
        assert info["auth_type"] == auth_type, info
        for key, value in expected.items():
            assert info.get(key) == value, f"{auth_type}: {key} is {info.get(key)!r}, expected {value!r}"
        if auth_type in DEFAULT_PORTS:
            key, port = DEFAULT_PORTS[auth_type]
            assert info.get(key, port) == port, f"{auth_type}: default {key} is {info.get(key)!r}"
        fetched = server.http.get(f"/services/{body['name']}", headers=server.admin_headers())
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == info

    listing = server.http.get("/services", headers=server.admin_headers())
    assert listing.status_code == 200
    assert_no_secret(listing.json(), secrets)
    assert {s["name"] for s in listing.json()} == {body["name"] for body, _ in examples.values()}


def auth_body(auth: dict, base_url: str | None = API, name: str = "bad-svc") -> dict:
    body = {"name": name, "auth": auth}
    if base_url is not None:
        body["base_url"] = base_url
    return body


INVALID = [
    (auth_body({"type": "bearer"}), "token"),
    (auth_body({"type": "bearer", "token": ""}), "token"),
    (auth_body({"type": "header", "header_name": "X-Key"}), "header_value"),
    (auth_body({"type": "header", "header_value": "v-123456789"}), "header_name"),
    (auth_body({"type": "header", "header_name": "X-Key", "header_value": ""}), "header_value"),
    (auth_body({"type": "header", "header_name": "X-Key\n", "header_value": "v-123456789"}), "header_name"),
    (auth_body({"type": "header", "header_name": "X Key", "header_value": "v-123456789"}), "header_name"),
    (auth_body({"type": "basic", "username": "u"}), "password"),
    (auth_body({"type": "basic", "password": "p-123456789"}), "username"),
    (auth_body({"type": "url"}, "https://api.example.com/bot{token}"), "token"),
    (auth_body({"type": "url", "token": "t-123456789"}, "https://api.example.com/bot"), "{token}"),
    (
        auth_body({"type": "oauth2_client", "client_id": "c", "client_secret": "s-1", "token_url": "https://t"}),
        "refresh_token",
    ),
    (auth_body({"type": "service_account"}), "file_ref"),
    (auth_body({"type": "ssh_key", "ssh_user": "u", "ssh_key_file_ref": "k"}, None), "ssh_host"),
    (auth_body({"type": "ssh_key", "ssh_host": "h.example", "ssh_key_file_ref": "k"}, None), "ssh_user"),
    (auth_body({"type": "imap", "imap_host": "h.example", "imap_user": "u"}, None), "imap_password"),
    (
        auth_body({"type": "imap", "imap_host": "h", "imap_user": "u", "imap_password": "p", "imap_tls": "x"}, None),
        "imap_tls",
    ),
    (auth_body({"type": "smtp", "smtp_user": "u", "smtp_password": "p"}, None), "smtp_host"),
    (auth_body({"type": "redis"}, None), "redis_host"),
    (auth_body({"type": "redis", "redis_host": "h.example", "redis_db": -1}, None), "redis_db"),
    (
        auth_body({"type": "postgres", "postgres_host": "h", "postgres_user": "u", "postgres_password": "p"}, None),
        "postgres_db",
    ),
    (
        auth_body(
            {
                "type": "postgres",
                "postgres_host": "h",
                "postgres_user": "u",
                "postgres_password": "p",
                "postgres_db": "d",
                "postgres_tls": "sometimes",
            },
            None,
        ),
        "postgres_tls",
    ),
    (auth_body({"type": "kerberos"}), "type"),
    (auth_body({"token": "t-123456789"}), "type"),
]


def test_invalid_auth_is_400_naming_the_field(unlocked_server):
    server = unlocked_server
    failures = []
    for body, field in INVALID:
        resp = server.http.post("/services", json=body, headers=server.admin_headers())
        if resp.status_code != 400 or field.lower() not in resp.text.lower():
            failures.append(f"{body['auth']}: {resp.status_code} {resp.text[:200]} (expected 400 naming {field})")
        else:
            assert_error(resp, 400)
    assert not failures, "\n".join(failures)
    assert_error(
        server.http.post("/services", json=auth_body({"type": "bearer"}), headers=server.admin_headers()),
        400,
        "bearer auth requires token",
    )
    assert service_names(server) == []


def test_invalid_names_are_400(unlocked_server):
    server = unlocked_server
    msg = assert_error(
        server.http.post("/services", json=bearer_service("a b", "x-123456789"), headers=server.admin_headers()),
        400,
    )
    # api.md gives `invalid service name "a b"` as an example; extra explanation after it is fine.
    assert msg.startswith("invalid service name") and "a b" in msg, msg
    failures = []
    for name in ["", "-lead", ".hidden", "_under", "a/b", "a b", "x" * 129, "caf\u00e9", "a\nb", "abc\n", "a;b"]:
        resp = server.http.post("/services", json=bearer_service(name, "x-123456789"), headers=server.admin_headers())
        if resp.status_code != 400 or "name" not in resp.text:
            failures.append(f"{name!r}: {resp.status_code} {resp.text[:200]}")
        else:
            assert_error(resp, 400, contains="name")
    assert not failures, "invalid names accepted:\n" + "\n".join(failures)
    assert_error(
        server.http.post(
            "/services",
            json={"base_url": API, "auth": {"type": "bearer", "token": "t-12345678"}},
            headers=server.admin_headers(),
        ),
        400,
        contains="name",
    )
    ok = add_service(server, bearer_service("A" + "x" * 127, "x-123456789"))
    assert len(ok["name"]) == 128
    assert service_names(server) == ["A" + "x" * 127]


def test_forbidden_header_names_rejected(unlocked_server):
    server = unlocked_server
    for header in ["Host", "content-length", "Transfer-Encoding", "connection", "Upgrade", "TE", "trailer"]:
        body = auth_body({"type": "header", "header_name": header, "header_value": "v-123456789"})
        resp = server.http.post("/services", json=body, headers=server.admin_headers())
        assert_error(resp, 400)
    assert service_names(server) == []


def test_base_url_rules(unlocked_server):
    server = unlocked_server
    assert_error(
        server.http.post(
            "/services", json=auth_body({"type": "bearer", "token": "t-12345678"}, None), headers=server.admin_headers()
        ),
        400,
        "base_url is required for bearer auth",
    )
    for auth in (
        {"type": "header", "header_name": "X-K", "header_value": "v-12345678"},
        {"type": "basic", "username": "u", "password": "p-12345678"},
    ):
        resp = server.http.post("/services", json=auth_body(auth, None), headers=server.admin_headers())
        assert_error(resp, 400, contains="base_url")
    # Non-HTTP types need no base_url.
    info = add_service(
        server,
        auth_body({"type": "redis", "redis_host": "redis.example.com"}, None, name="no-url-redis"),
    )
    assert info["auth_type"] == "redis"
    assert not info.get("base_url")


def test_put_takes_name_from_path(unlocked_server, secrets):
    server = unlocked_server
    body = bearer_service("body-name", secrets.new("put-bearer"))
    resp = server.http.put("/services/path-name", json=body, headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "path-name"
    assert service_names(server) == ["path-name"]

    del body["name"]
    resp = server.http.put("/services/path-name", json=body, headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
    assert service_names(server) == ["path-name"]

    assert_error(server.http.put("/services/bad%20name", json=body, headers=server.admin_headers()), 400)
    assert_error(server.http.put("/services/-bad", json=body, headers=server.admin_headers()), 400)
    assert service_names(server) == ["path-name"]


def test_delete_then_get_is_404(unlocked_server, secrets):
    server = unlocked_server
    add_service(server, bearer_service("doomed", secrets.new("doomed-bearer")))
    resp = server.http.delete("/services/doomed", headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "deleted"}
    assert_error(server.http.get("/services/doomed", headers=server.admin_headers()), 404, 'service "doomed" not found')
    assert_error(
        server.http.delete("/services/doomed", headers=server.admin_headers()), 404, 'service "doomed" not found'
    )


def test_list_sorted_by_name(unlocked_server, secrets):
    server = unlocked_server
    names = ["zeta", "alpha", "m-1", "beta.2", "b", "alpha-0"]
    for name in names:
        add_service(server, bearer_service(name, secrets.new(f"sort-{name}")))
    assert service_names(server) == sorted(names)


def ssh_body(key_file: str, host_key: str | None) -> dict:
    auth = {"type": "ssh_key", "ssh_host": "ssh.example.com", "ssh_user": "ops", "ssh_key_file_ref": key_file}
    if host_key is not None:
        auth["ssh_host_key"] = host_key
    return {"name": "pinned", "auth": auth}


def test_upsert_keeps_ssh_host_key_pin(unlocked_server, secrets):
    server = unlocked_server
    key_pem = ssh_private_key_pem()
    secrets.add(pem_secret_line(key_pem))
    upload_ok(server, "pinned-key", key_pem)
    host_key = ssh_host_public_key()

    first = add_service(server, ssh_body("pinned-key", host_key))
    fingerprint = first.get("ssh_host_key_fingerprint")
    assert fingerprint, first
    assert fingerprint.removeprefix("SHA256:") == ssh_fingerprint(host_key).removeprefix("SHA256:")

    again = add_service(server, ssh_body("pinned-key", None))
    assert again.get("ssh_host_key_fingerprint") == fingerprint, again
    stored = server.http.get("/services/pinned", headers=server.admin_headers()).json()
    assert stored.get("ssh_host_key_fingerprint") == fingerprint

    cleared = add_service(server, ssh_body("pinned-key", ""))
    assert not cleared.get("ssh_host_key_fingerprint"), cleared
    stored = server.http.get("/services/pinned", headers=server.admin_headers()).json()
    assert not stored.get("ssh_host_key_fingerprint"), stored


def test_malformed_and_odd_json_bodies_are_400(unlocked_server):
    server = unlocked_server
    headers = {**server.admin_headers(), "Content-Type": "application/json"}
    assert_error(server.http.post("/services", content=b'{"name": "x",', headers=headers), 400, "invalid JSON body")
    for raw in (
        b"",
        b"[]",
        b"null",
        b'"text"',
        b"42",
        b'{"name": 5, "auth": {"type": "bearer"}}',
        b'{"name": "x", "auth": "bearer"}',
        b'{"name": "x", "base_url": 7, "auth": {"type": "bearer"}}',
        b"\xff\xfe",
    ):
        resp = server.http.post("/services", content=raw, headers=headers)
        assert_error(resp, 400)
    for raw in (b"{bad", b"[]", b"null"):
        assert_error(server.http.post("/tokens", content=raw, headers=headers), 400)
    assert_error(server.http.post("/auth/unlock", content=b"{bad", headers=headers), 400, "invalid JSON body")


def test_unknown_fields_are_ignored(unlocked_server, secrets):
    body = bearer_service("extra-fields", secrets.new("extra-bearer"))
    body["colour"] = "blue"
    body["auth"]["flavour"] = "mint"
    info = add_service(unlocked_server, body)
    assert info["name"] == "extra-fields"
    assert "colour" not in info and "flavour" not in info


def test_body_over_1mib_is_413(unlocked_server):
    server = unlocked_server
    body = bearer_service("huge", "h" * (1024 * 1024 + 16))
    resp = server.http.post("/services", json=body, headers=server.admin_headers())
    assert_error(resp, 413)
    assert service_names(server) == []


def test_unknown_route_and_wrong_method(unlocked_server):
    server = unlocked_server
    for path in ("/nope", "/services/a/b/c", "/v1/models"):
        resp = server.http.get(path, headers=server.admin_headers())
        assert_error(resp, 404)
        assert_security_headers(resp)
    for method, path in (("PATCH", "/services"), ("DELETE", "/health"), ("PUT", "/tokens"), ("GET", "/auth/unlock")):
        resp = server.http.request(method, path, headers=server.admin_headers())
        assert_error(resp, 405, "method not allowed")
        assert_security_headers(resp)


def test_security_headers_on_success_and_errors(unlocked_server, secrets):
    server = unlocked_server
    admin = server.admin_headers()
    responses = [
        server.http.get("/health"),
        server.http.get("/services", headers=admin),
        server.http.post("/services", json=bearer_service("hdr", secrets.new("hdr-bearer")), headers=admin),
        server.http.get("/services/hdr", headers=admin),
        server.http.get("/tokens", headers=admin),
        server.http.get("/services/missing", headers=admin),
        server.http.post("/services", json={"name": "x"}, headers=admin),
        server.http.get("/services"),
        server.http.get("/services", headers=bearer("0" * 64)),
        server.http.post("/auth/unlock", json={"password": secrets.new("wrong-pw")}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 201, 200, 200, 404, 400, 401, 401, 401]
    for resp in responses:
        assert_security_headers(resp)
        content_type = resp.headers.get("content-type", "")
        assert content_type.startswith("application/json"), (resp.request.url.path, content_type)


def test_a_json_body_sent_in_many_segments_is_read_whole(unlocked_server):
    """``read(n)`` returns the first segment only: a body trickled in pieces was a 400 'invalid JSON'."""
    import socket
    import time

    body = json.dumps({"scope": "proxy", "name": "trickled"}).encode()
    host, port = unlocked_server.addr.removeprefix("http://").rsplit(":", 1)
    head = (
        f"POST /tokens HTTP/1.1\r\nHost: v\r\nAuthorization: Bearer {unlocked_server.admin_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        for i in range(0, len(body), 8):
            sock.sendall(body[i : i + 8])
            time.sleep(0.05)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b"9" * 5000, b'{"password": ' + b"1" * 5000 + b"}", b'{"name": "\\ud800"}'],
    ids=["deep-nesting", "huge-number", "huge-int-field", "lone-surrogate"],
)
def test_hostile_json_is_a_400_never_a_500(server, body):
    """Red-team round 2: these reached json.loads's RecursionError/int limit (500, traceback), or carried a
    lone surrogate into SSH and the vault file (500). No token needed for /auth/unlock."""
    resp = server.http.post("/auth/unlock", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"error": "invalid JSON body"}
    assert "Traceback" not in server.log_text()
