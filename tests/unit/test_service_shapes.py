"""Service shapes: API input is type-strict, the Go tool's shapes (unix-seconds ``expires_at``) are
accepted from the API and the vault file alike, and an entry that still cannot be read is kept with
the reason (SPEC §3, §8)."""

from __future__ import annotations

import json

import pytest

from vault_proxy.vault.info import service_info
from vault_proxy.vault.store import parse_plaintext
from vault_proxy.vault.validation import ServiceValidationError, parse_service

EXPIRY = 4102444800  # 2100-01-01T00:00:00Z


def _oauth(**auth: object) -> dict:
    base = {"type": "oauth2_client", "client_id": "cid", "client_secret": "cs-secret-1",
            "token_url": "https://oauth.example.com/token", "refresh_token": "rt-secret-1",
            "access_token": "at-secret-1"}  # fmt: skip
    return {"name": "go-oauth", "base_url": "https://api.example.com", "auth": {**base, **auth}}


@pytest.mark.parametrize("expires_at", [EXPIRY, float(EXPIRY), EXPIRY + 0.5, "2100-01-01T00:00:00Z"])
def test_oauth_expires_at_accepts_unix_seconds_and_rfc3339(expires_at):
    service = parse_service(_oauth(expires_at=expires_at))
    assert service.auth.expires_at.startswith("2100-01-01T00:00:00")
    assert service_info(service)["token_status"] == "valid"
    assert json.loads(json.dumps(service.stored_dict()))["auth"]["expires_at"] == service.auth.expires_at


def test_service_account_expires_at_accepts_unix_seconds():
    body = {
        "name": "sa",
        "base_url": "https://api.example.com",
        "auth": {"type": "service_account", "file_ref": "sa.json", "access_token": "x", "expires_at": EXPIRY},
    }
    assert parse_service(body).auth.expires_at == "2100-01-01T00:00:00Z"


@pytest.mark.parametrize("expires_at", [True, [1], {"a": 1}, float("nan"), float("inf"), 10**30])
def test_oauth_expires_at_refuses_other_shapes(expires_at):
    with pytest.raises(ServiceValidationError, match="expires_at"):
        parse_service(_oauth(expires_at=expires_at))


@pytest.mark.parametrize(
    ("field", "value"),
    [("tls_skip_verify", "yes"), ("tls_skip_verify", 1), ("session_cookies", "true"),
     ("max_request_mb", True), ("max_request_mb", "5"), ("base_url", 7)],
)  # fmt: skip
def test_api_input_is_type_strict(field, value):
    body = {"name": "s", "base_url": "https://api.example.com", "auth": {"type": "bearer", "token": "t"}, field: value}
    with pytest.raises(ServiceValidationError, match=field):
        parse_service(body)


def test_api_auth_fields_are_type_strict():
    body = {"name": "r", "auth": {"type": "redis", "redis_host": "h", "redis_tls": "yes"}}
    with pytest.raises(ServiceValidationError, match="redis_tls"):
        parse_service(body)
    body["auth"] = {"type": "redis", "redis_host": "h", "redis_port": "6380"}
    with pytest.raises(ServiceValidationError, match="redis_port"):
        parse_service(body)


def _vault(services: dict) -> bytes:
    return json.dumps({"services": services, "files": {}}).encode()


def test_vault_file_accepts_go_shapes_and_older_lax_values():
    svc = _oauth(expires_at=EXPIRY)
    lax = {"name": "lax", "base_url": "https://api.example.com", "auth": {"type": "bearer", "token": "t"},
           "tls_skip_verify": "true"}  # fmt: skip
    state = parse_plaintext(_vault({"go-oauth": svc, "lax": lax}))
    assert sorted(state.services) == ["go-oauth", "lax"] and not state.unparsed_services
    assert state.services["go-oauth"].auth.expires_at == "2100-01-01T00:00:00Z"
    assert state.services["lax"].tls_skip_verify is True


def test_unreadable_vault_entry_is_kept_with_its_reason(caplog):
    broken = {"name": "broken", "base_url": "https://api.example.com", "auth": {"type": "bearer"}}
    with caplog.at_level("WARNING"):
        state = parse_plaintext(_vault({"broken": broken}))
    assert "broken" not in state.services
    assert state.unparsed_services["broken"] == broken
    assert state.unreadable_reasons["broken"] == "bearer auth requires token"
    assert any("broken" in r.getMessage() and "bearer auth requires token" in r.getMessage() for r in caplog.records)
    assert json.loads(state.plaintext())["services"]["broken"] == broken  # still written back verbatim


def test_unreadable_entry_listing_holds_no_secret_and_always_a_type():
    from vault_proxy.vault.info import unreadable_info

    stored = {"name": "x", "base_url": "https://a.example.com", "auth": {"type": "newer", "token": "s3cret"}}
    assert unreadable_info("x", stored, "why") == {
        "name": "x", "base_url": "https://a.example.com", "auth_type": "unknown", "error": "why",
    }  # fmt: skip
    assert unreadable_info("y", ["not", "an", "object"], "why") == {"name": "y", "auth_type": "unknown", "error": "why"}
