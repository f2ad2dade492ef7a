"""Token registry rules: format, hashing, expiry, scopes, restriction, revocation by prefix."""

from __future__ import annotations

import re
import time

import pytest

from vault_proxy.tokens import AmbiguousPrefixError, TokenError, TokenNotFoundError, TokenRegistry


def test_token_is_64_hex_and_only_its_hash_is_kept():
    registry = TokenRegistry(default_ttl=60)
    token, record = registry.mint("admin")
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert token not in repr(record) and token not in str(record.public())
    assert record.id_prefix == token[:12]
    assert registry.authenticate(token) is record


def test_unknown_and_expired_tokens_are_refused():
    registry = TokenRegistry(default_ttl=60)
    with pytest.raises(TokenError, match="invalid token"):
        registry.authenticate("0" * 64)
    token, _ = registry.mint("proxy", ttl=0.05)
    time.sleep(0.1)
    with pytest.raises(TokenError, match="token expired"):
        registry.authenticate(token)
    with pytest.raises(TokenError, match="invalid token"):  # purged after the first refusal
        registry.authenticate(token)


def test_default_ttl_applies():
    registry = TokenRegistry(default_ttl=7200)
    _, record = registry.mint("proxy")
    assert record.expires_at - record.created_at == pytest.approx(7200, abs=1)


def test_restricted_token_reaches_only_its_services():
    registry = TokenRegistry(default_ttl=60)
    _, record = registry.mint("proxy", services=["openai"], name="agent-7")
    assert record.may_use("openai") and not record.may_use("github")
    assert record.public()["services"] == ["openai"] and record.public()["name"] == "agent-7"
    _, unrestricted = registry.mint("proxy")
    assert unrestricted.may_use("anything")


def test_unknown_scope_refused():
    with pytest.raises(ValueError):
        TokenRegistry(60).mint("root")


def test_revoke_by_full_token_and_by_prefix():
    registry = TokenRegistry(default_ttl=60)
    first, _ = registry.mint("proxy")
    second, record = registry.mint("proxy")
    registry.revoke(first)
    with pytest.raises(TokenError):
        registry.authenticate(first)
    registry.revoke(record.id_prefix[:8])
    with pytest.raises(TokenError):
        registry.authenticate(second)
    with pytest.raises(TokenNotFoundError):
        registry.revoke(second)


def test_revoke_prefix_rules():
    registry = TokenRegistry(default_ttl=60)
    registry.mint("proxy")
    with pytest.raises(ValueError, match="at least 8"):
        registry.revoke("abc")
    with pytest.raises(TokenNotFoundError):
        registry.revoke("zzzzzzzz")
    with pytest.raises(ValueError, match="full token or its id_prefix"):
        registry.revoke("a" * 20)


def test_revoke_all():
    registry = TokenRegistry(default_ttl=60)
    token, _ = registry.mint("admin")
    registry.revoke_all()
    with pytest.raises(TokenError):
        registry.authenticate(token)
    assert registry.list() == []


def test_ambiguous_prefix_revokes_nothing(monkeypatch):
    registry = TokenRegistry(default_ttl=60)
    counter = iter(["ab" * 32, "ab" * 31 + "cd"])
    monkeypatch.setattr("vault_proxy.tokens.secrets.token_hex", lambda _n: next(counter))
    registry.mint("proxy")
    registry.mint("proxy")
    with pytest.raises(AmbiguousPrefixError, match="ambiguous"):
        registry.revoke("abababab")
    assert len(registry.list()) == 2
