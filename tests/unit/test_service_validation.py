"""Service validation: every auth type, good and bad, with messages that name the field."""

from __future__ import annotations

import subprocess

import pytest

from vault_proxy.vault.info import service_info, token_status
from vault_proxy.vault.validation import ServiceValidationError, parse_service

ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"

GOOD = {
    "bearer": ({"token": "bearer-SECRET"}, "https://api.example.com"),
    "header": ({"header_name": "X-Api-Key", "header_value": "header-SECRET"}, "https://api.example.com"),
    "basic": ({"username": "alice", "password": "basic-SECRET"}, "https://api.example.com"),
    "url": ({"token": "url-SECRET"}, "https://api.example.com/bot{token}"),
    "oauth2_client": (
        {"client_id": "cid", "client_secret": "oauth-client-SECRET", "token_url": "https://oauth.example.com/token",
         "refresh_token": "oauth-refresh-SECRET", "scopes": ["a", "b"]},
        "https://api.example.com",
    ),
    "service_account": ({"file_ref": "sa.json", "sa_scopes": ["x"]}, "https://api.example.com"),
    "ssh_key": ({"ssh_host": "h.example.com", "ssh_user": "deploy", "ssh_key_file_ref": "id_ed25519",
                 "ssh_key_passphrase": "ssh-pass-SECRET", "ssh_host_key": ED25519_KEY}, ""),
    "imap": ({"imap_host": "imap.example.com", "imap_user": "a@example.com", "imap_password": "imap-SECRET"}, ""),
    "smtp": ({"smtp_host": "smtp.example.com", "smtp_user": "a@example.com", "smtp_password": "smtp-SECRET"}, ""),
    "redis": ({"redis_host": "redis.example.com", "redis_password": "redis-SECRET", "redis_db": 2}, ""),
    "postgres": ({"postgres_host": "db.example.com", "postgres_user": "app", "postgres_password": "pg-SECRET",
                  "postgres_db": "appdb"}, ""),
}  # fmt: skip


def body(kind: str, **overrides):
    fields, base_url = GOOD[kind]
    data = {"name": f"svc-{kind}", "auth": {"type": kind, **fields}}
    if base_url:
        data["base_url"] = base_url
    data.update(overrides)
    return data


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_valid_service_round_trips_and_info_has_no_secret(kind):
    service = parse_service(body(kind))
    assert parse_service(service.stored_dict()) == service
    info = service_info(service)
    assert info["auth_type"] == kind
    text = repr(service) + str(info)
    for secret in service.secret_values():
        assert "SECRET" in secret
        assert secret not in text


@pytest.mark.parametrize(
    ("kind", "drop", "message"),
    [
        ("bearer", "token", "bearer auth requires token"),
        ("header", "header_value", "header auth requires header_value"),
        ("basic", "password", "basic auth requires password"),
        ("url", "token", "url auth requires token"),
        ("oauth2_client", "refresh_token", "oauth2_client auth requires refresh_token"),
        ("service_account", "file_ref", "service_account auth requires file_ref"),
        ("ssh_key", "ssh_key_file_ref", "ssh_key auth requires ssh_key_file_ref"),
        ("imap", "imap_password", "imap auth requires imap_password"),
        ("smtp", "smtp_host", "smtp auth requires smtp_host"),
        ("redis", "redis_host", "redis auth requires redis_host"),
        ("postgres", "postgres_db", "postgres auth requires postgres_db"),
    ],
)
def test_missing_required_field_is_named(kind, drop, message):
    data = body(kind)
    del data["auth"][drop]
    with pytest.raises(ServiceValidationError, match=message):
        parse_service(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "has space"}, "invalid service name"),
        ({"name": "-leading"}, "invalid service name"),
        ({"name": "x" * 129}, "invalid service name"),
        ({"name": ""}, "service name is required"),
        ({"base_url": ""}, "base_url is required for bearer auth"),
        ({"base_url": "ftp://example.com"}, "base_url must be an http"),
        ({"auth": {"type": "magic"}}, "auth.type must be one of"),
        ({"auth": "bearer"}, "auth is required"),
    ],
)
def test_bad_service_fields(change, message):
    with pytest.raises(ServiceValidationError, match=message):
        parse_service(body("bearer", **change))


@pytest.mark.parametrize("header", ["Host", "content-length", "Transfer-Encoding", "connection", "Upgrade", "TE",
                                    "trailer", "X-Vault-Token", "bad header"])  # fmt: skip
def test_reserved_or_invalid_header_names_are_refused(header):
    data = body("header")
    data["auth"]["header_name"] = header
    with pytest.raises(ServiceValidationError, match="header_name"):
        parse_service(data)


def test_url_auth_needs_placeholder():
    with pytest.raises(ServiceValidationError, match=r"\{token\}"):
        parse_service(body("url", base_url="https://api.example.com/"))


def test_non_http_types_need_no_base_url_and_get_port_defaults():
    imap = parse_service(body("imap"))
    assert imap.auth.imap_port == 993
    starttls = body("imap")
    starttls["auth"]["imap_tls"] = "starttls"
    assert parse_service(starttls).auth.imap_port == 143
    assert parse_service(body("smtp")).auth.smtp_port == 587
    assert parse_service(body("postgres")).auth.postgres_tls == "require"
    assert parse_service(body("redis")).auth.redis_port == 6379


@pytest.mark.parametrize(
    ("kind", "field", "value", "message"),
    [
        ("redis", "redis_db", -1, "redis_db"),
        ("imap", "imap_tls", "sometimes", "imap_tls"),
        ("postgres", "postgres_tls", "always", "postgres_tls"),
        ("ssh_key", "ssh_port", 70000, "ssh_port"),
        ("ssh_key", "ssh_host_key", "not a key", "ssh_host_key"),
        ("ssh_key", "ssh_allowed_paths", ["relative/path"], "ssh_allowed_paths"),
    ],
)
def test_bad_field_values(kind, field, value, message):
    data = body(kind)
    data["auth"][field] = value
    with pytest.raises(ServiceValidationError, match=message):
        parse_service(data)


def test_validation_errors_never_echo_a_secret():
    data = body("redis")
    data["auth"]["redis_password"] = {"nested": "redis-SECRET-in-error"}
    with pytest.raises(ServiceValidationError) as info:
        parse_service(data)
    assert "redis-SECRET-in-error" not in str(info.value)


def test_repost_keeps_pin_and_oauth_cache_unless_cleared():
    pinned = parse_service(body("ssh_key"))
    without_pin = body("ssh_key")
    del without_pin["auth"]["ssh_host_key"]
    assert parse_service(without_pin, previous=pinned).auth.ssh_host_key == ED25519_KEY
    cleared = body("ssh_key")
    cleared["auth"]["ssh_host_key"] = ""
    assert parse_service(cleared, previous=pinned).auth.ssh_host_key == ""

    cached = body("oauth2_client")
    cached["auth"].update(access_token="oauth-access-SECRET", expires_at="2099-01-01T00:00:00Z")
    previous = parse_service(cached)
    updated = parse_service(body("oauth2_client"), previous=previous)
    assert updated.auth.access_token.get_secret_value() == "oauth-access-SECRET"
    assert service_info(updated)["token_status"] == "valid"


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_ssh_fingerprint_matches_ssh_keygen(tmp_path, key_type):
    key = tmp_path / "host"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(key)], check=True)
    expected = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    data = body("ssh_key")
    data["auth"]["ssh_host_key"] = (tmp_path / "host.pub").read_text()
    assert service_info(parse_service(data))["ssh_host_key_fingerprint"] == expected


def test_name_from_path_wins():
    assert parse_service(body("bearer"), name="from-path").name == "from-path"
    with pytest.raises(ServiceValidationError, match="invalid service name"):
        parse_service(body("bearer"), name="bad/name")


def test_token_status():
    assert token_status("") == "expired"
    assert token_status("2000-01-01T00:00:00Z") == "expired"
    assert token_status("2999-01-01T00:00:00Z") == "valid"
