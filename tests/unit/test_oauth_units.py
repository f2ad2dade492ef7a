"""OAuth building blocks without a network: JWT assertions, token answers, consent states, settings."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vault_proxy.oauth.consent import MAX_PENDING, STATE_TTL, ConsentStates, TooManyPending, authorization_url
from vault_proxy.oauth.grants import (
    DEFAULT_EXPIRES_IN,
    TokenEndpointError,
    _expires_in,
    mask,
    service_account_assertion,
)
from vault_proxy.oauth.manager import usable_token
from vault_proxy.oauth.sources import client_settings, google_client
from vault_proxy.vault.models import Service


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_service_account_assertion_is_a_valid_rs256_jwt(fmt):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
    jwt = service_account_assertion(pem, "sa@x.iam", "https://t.example/token", ["a", "b"], "u@x.com", now=1000)
    header, claims, signature = jwt.split(".")
    assert json.loads(_b64decode(header)) == {"alg": "RS256", "typ": "JWT"}
    assert json.loads(_b64decode(claims)) == {"iss": "sa@x.iam", "scope": "a b", "aud": "https://t.example/token",
                                              "iat": 1000, "exp": 4600, "sub": "u@x.com"}  # fmt: skip
    key.public_key().verify(_b64decode(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_bad_private_key_is_a_clear_error():
    with pytest.raises(TokenEndpointError, match="cannot be loaded"):
        service_account_assertion("not a key", "sa@x", "https://t/token", [])


@pytest.mark.parametrize(("value", "expected"), [(3600, 3600), ("120", 120), (None, DEFAULT_EXPIRES_IN),
                                                 (0, DEFAULT_EXPIRES_IN), ("soon", DEFAULT_EXPIRES_IN)])  # fmt: skip
def test_expires_in_parsing(value, expected):
    assert _expires_in(value) == expected


def test_mask_hides_every_secret():
    assert mask("id=abc secret=s3cr3t-value", ["s3cr3t-value", "ab"]) == "id=abc secret=***"


def test_consent_states_single_use_expiring_and_bounded():
    now = [0.0]
    states = ConsentStates(clock=lambda: now[0])
    details = {"service_name": "s", "base_url": "https://a", "scopes": ["x"], "redirect_uri": "http://127.0.0.1/cb",
               "client_secret_file": "c.json", "overwrite": False}  # fmt: skip
    first = states.begin(**details)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(first.code_verifier.encode()).digest()).rstrip(b"=").decode()
    assert first.code_challenge == challenge
    url = authorization_url("https://auth.example/o?x=1", "cid", first)
    assert url.startswith("https://auth.example/o?x=1&") and "code_challenge_method=S256" in url
    assert "access_type=offline" in url and "prompt=consent" in url and first.code_verifier not in url
    assert states.take(first.state) is first
    assert states.take(first.state) is None
    late = states.begin(**details)
    now[0] += STATE_TTL + 1
    assert states.take(late.state) is None
    for _ in range(MAX_PENDING):
        states.begin(**details)
    with pytest.raises(TooManyPending):
        states.begin(**details)


def test_usable_token_needs_thirty_seconds_left():
    from datetime import UTC, datetime, timedelta

    def auth(seconds: int):
        expiry = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
        return Service.model_validate({"name": "o", "base_url": "https://a", "auth": {
            "type": "oauth2_client", "client_id": "c", "client_secret": "s", "token_url": "https://t/token",
            "refresh_token": "r", "access_token": "tok", "expires_at": expiry}}).auth  # fmt: skip

    assert usable_token(auth(600)) == "tok"
    assert usable_token(auth(20)) == ""


class _File:
    def __init__(self, doc: dict) -> None:
        self._raw = json.dumps(doc).encode()

    def data(self) -> bytes:
        return self._raw


def test_client_settings_from_google_files_and_rotated_token_wins():
    files = {"c.json": _File({"web": {"client_id": "cid", "client_secret": "cs", "token_uri": "https://t/token"}}),
             "t.json": _File({"refresh_token": "from-file"})}  # fmt: skip
    base = {"type": "oauth2_client", "client_secret_file": "c.json", "token_file": "t.json"}
    service = Service.model_validate({"name": "o", "base_url": "https://a", "auth": base})
    settings = client_settings(service.auth, files)
    assert (settings.client_id, settings.token_url, settings.refresh_token) == ("cid", "https://t/token", "from-file")
    rotated = Service.model_validate({"name": "o", "base_url": "https://a", "auth": {**base, "refresh_token": "new"}})
    assert client_settings(rotated.auth, files).refresh_token == "new"
    assert google_client({"installed": {"client_id": "x"}}) == {"client_id": "x"}
    with pytest.raises(TokenEndpointError, match="not a stored file"):
        client_settings(service.auth, {})
