"""Self-test of the local OAuth2 provider peer (tests/peers/oauth_provider.py) used by the OAuth integration tests."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, str(Path(__file__).parent.parent / "peers"))

from oauth_provider import JWT_BEARER, OAuthProvider, ServiceAccount  # noqa: E402


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthProvider]:
    peer = OAuthProvider(trustme.CA(), tmp_path_factory.mktemp("oauth")).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def http(provider: OAuthProvider) -> Iterator[httpx.Client]:
    verify = ssl.create_default_context(cafile=str(provider.ca_path))
    with httpx.Client(verify=verify, timeout=10.0) as client:
        yield client


def _refresh(http: httpx.Client, provider: OAuthProvider, client, token: str | None = None, **extra) -> httpx.Response:
    form = {"grant_type": "refresh_token", "client_id": client.client_id, "client_secret": client.client_secret,
            "refresh_token": token or client.refresh_token, **extra}  # fmt: skip
    return http.post(provider.token_url, data=form)


def _api(http: httpx.Client, provider: OAuthProvider, token: str, path: str = "/whoami") -> httpx.Response:
    return http.get(provider.api_url + path, headers={"Authorization": f"Bearer {token}"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(account: ServiceAccount, key: rsa.RSAPrivateKey | None = None, **overrides) -> str:
    """An RS256 assertion signed with the account's key from its JSON (``overrides`` change claims; None drops)."""
    if key is None:
        key = serialization.load_pem_private_key(account.key_json["private_key"].encode(), password=None)
    now = int(time.time())
    claims = {"iss": account.client_email, "scope": "https://scope/a https://scope/b",
              "aud": account.key_json["token_uri"], "iat": now, "exp": now + 3600, **overrides}  # fmt: skip
    claims = {k: v for k, v in claims.items() if v is not None}
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(signature)}"


def _jwt_grant(http: httpx.Client, provider: OAuthProvider, assertion: str) -> httpx.Response:
    return http.post(provider.token_url, data={"grant_type": JWT_BEARER, "assertion": assertion})


def test_refresh_grant_token_works_on_the_api(http, provider):
    client = provider.new_client()
    resp = _refresh(http, provider, client, scope="read")
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert set(doc) == {"access_token", "token_type", "expires_in"}
    assert doc["token_type"] == "Bearer" and doc["expires_in"] == 3600 and doc["access_token"].startswith("at-")
    token = doc["access_token"]
    assert provider.valid(token) and provider.refresh_count(client.client_id) == 1
    api = _api(http, provider, token, "/v1/items?x=1")
    assert api.status_code == 200
    assert api.json() == {"ok": True, "path": "/api/v1/items", "token_suffix": token[-4:]}
    assert http.post(provider.api_url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert _api(http, provider, "at-not-issued").json() == {"error": "invalid_token"}
    assert http.get(provider.api_url + "/whoami").status_code == 401
    # a non-rotating client keeps its refresh token
    assert _refresh(http, provider, client).status_code == 200
    assert provider.refresh_count(client.client_id) == 2

    wrong_secret = {"grant_type": "refresh_token", "client_id": client.client_id, "client_secret": "nope",
                    "refresh_token": client.refresh_token}  # fmt: skip
    resp = http.post(provider.token_url, data=wrong_secret)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    resp = _refresh(http, provider, client, token="rt-unknown")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    resp = http.post(provider.token_url, json={"grant_type": "refresh_token"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    resp = http.post(provider.token_url, data={"grant_type": "password"})
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"
    assert provider.refresh_count(client.client_id) == 2

    mine = [g for g in provider.grants() if g.get("client_id") == client.client_id]
    assert [g["status"] for g in mine] == [200, 200, 401, 400]
    assert all(g["grant_type"] == "refresh_token" and isinstance(g["time"], float) for g in mine)

    provider.expire_all()
    assert not provider.valid(token)
    assert _api(http, provider, token).status_code == 401


def test_rotation_invalidates_the_old_refresh_token(http, provider):
    client = provider.new_client(rotate=True)
    first = client.refresh_token
    resp = _refresh(http, provider, client)
    assert resp.status_code == 200, resp.text
    rotated = resp.json()["refresh_token"]
    assert rotated != first and client.refresh_token == rotated and client.refresh_tokens == [first, rotated]
    resp = _refresh(http, provider, client, token=first)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    assert _refresh(http, provider, client).status_code == 200
    assert len(client.refresh_tokens) == 3 and provider.refresh_count(client.client_id) == 2


def test_expires_in_omitted_when_configured(http, provider):
    client = provider.new_client(expires_in=None)
    doc = _refresh(http, provider, client).json()
    assert "expires_in" not in doc and "refresh_token" not in doc
    assert provider.valid(doc["access_token"])


@pytest.mark.parametrize(("mode", "status"), [("400", 400), ("500", 500), ("html", 200)])
def test_fail_modes_plant_secrets_in_the_body(http, provider, mode, status):
    client = provider.new_client(fail=mode)
    resp = _refresh(http, provider, client)
    assert resp.status_code == status
    assert OAuthProvider.PLANTED in resp.text and client.client_secret in resp.text
    if mode == "html":
        assert resp.headers["content-type"].startswith("text/html")
    else:
        assert resp.json()["error"]
    assert provider.refresh_count(client.client_id) == 0
    assert [g["status"] for g in provider.grants() if g.get("client_id") == client.client_id] == [status]


def test_slow_mode_does_not_answer(http, provider):
    client = provider.new_client(fail="slow")
    with pytest.raises(httpx.ReadTimeout):
        http.post(provider.token_url, timeout=0.5, data={"grant_type": "refresh_token", "client_id": client.client_id,
                  "client_secret": client.client_secret, "refresh_token": client.refresh_token})  # fmt: skip


def test_jwt_bearer_grant(http, provider):
    account = provider.new_service_account(scopes_required=["https://scope/a"])
    assert account.key_json["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert account.key_json["type"] == "service_account" and account.key_json["token_uri"] == provider.token_url
    assert account.client_email.endswith("@test.iam.gserviceaccount.com")
    resp = _jwt_grant(http, provider, _jwt(account, sub="user@example.com"))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["expires_in"] == 3600 and "refresh_token" not in doc
    assert _api(http, provider, doc["access_token"]).status_code == 200
    assert account.subject_seen == "user@example.com"
    ok = [g for g in provider.grants() if g.get("iss") == account.client_email]
    assert len(ok) == 1 and ok[0]["status"] == 200 and ok[0]["grant_type"] == JWT_BEARER

    def rejected(assertion: str) -> str:
        resp = _jwt_grant(http, provider, assertion)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text
        return resp.json()["error_description"]

    assert "aud" in rejected(_jwt(account, aud=provider.url + "/other"))
    head, body, sig = _jwt(account).split(".")
    tampered = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    tampered["scope"] = "https://scope/a https://scope/admin"
    assert rejected(f"{head}.{_b64(json.dumps(tampered).encode())}.{sig}") == "invalid signature"
    assert rejected(_jwt(account, key=rsa.generate_private_key(public_exponent=65537, key_size=1024))) == (
        "invalid signature"
    )
    now = int(time.time())
    assert "exp" in rejected(_jwt(account, iat=now, exp=now + 3599))
    assert "iat" in rejected(_jwt(account, iat=now - 600, exp=now + 3000))
    assert "scope lacks" in rejected(_jwt(account, scope="https://scope/b"))
    assert "scope" in rejected(_jwt(account, scope=""))
    assert "iss" in rejected(_jwt(account, iss="nobody@test.iam.gserviceaccount.com"))
    assert rejected("not-a-jwt")
    assert account.subject_seen == "user@example.com"
    assert [g["status"] for g in provider.grants() if g.get("iss") == account.client_email].count(400) == 7


def test_pkcs1_key_json_loads(http, provider):
    account = provider.new_service_account(pkcs1=True)
    pem = account.key_json["private_key"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert key.public_key().public_numbers() == account.public_key.public_numbers()
    resp = _jwt_grant(http, provider, _jwt(account))
    assert resp.status_code == 200, resp.text
    assert account.subject_seen is None


def _auth_url(
    provider: OAuthProvider, client_id: str, redirect: str, verifier: str, overrides: dict | None = None
) -> str:
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    query = {"client_id": client_id, "redirect_uri": redirect, "response_type": "code", "scope": "read write",
             "state": "st-" + secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256",
             "access_type": "offline", "prompt": "consent", **(overrides or {})}  # fmt: skip
    return f"{provider.authorize_url}?{urlencode({k: v for k, v in query.items() if v is not None})}"


def test_authorization_code_with_pkce(http, provider):
    redirect = "http://127.0.0.1:9/auth/oauth2/callback"
    client, client_json = provider.new_web_client([redirect], kind="web")
    assert client_json == {"web": {"client_id": client.client_id, "client_secret": client.client_secret,
                                   "auth_uri": provider.authorize_url, "token_uri": provider.token_url,
                                   "redirect_uris": [redirect]}}  # fmt: skip
    assert http.get(provider.authorize_url).text == "consent page"
    verifier = secrets.token_urlsafe(48)
    url = _auth_url(provider, client.client_id, redirect, verifier)
    back = provider.authorize(url)
    assert back.startswith(redirect + "?")
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == parse_qs(urlsplit(url).query)["state"]
    form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect,
            "code_verifier": verifier}  # fmt: skip
    resp = http.post(provider.token_url, data=form, auth=(client.client_id, client.client_secret))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["expires_in"] == 3600 and doc["refresh_token"] == client.refresh_token
    assert _api(http, provider, doc["access_token"]).status_code == 200
    assert _refresh(http, provider, client).status_code == 200, "the code's refresh token is registered"

    reused = http.post(provider.token_url, data={**form, "client_id": client.client_id,
                                                 "client_secret": client.client_secret})  # fmt: skip
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    code = parse_qs(urlsplit(provider.authorize(_auth_url(provider, client.client_id, redirect, verifier))).query)
    wrong = {**form, "code": code["code"][0], "code_verifier": secrets.token_urlsafe(48)}
    resp = http.post(provider.token_url, data=wrong, auth=(client.client_id, client.client_secret))
    assert resp.status_code == 400 and resp.json() == {"error": "invalid_grant",
                                                       "error_description": "PKCE verification failed"}  # fmt: skip

    code = parse_qs(urlsplit(provider.authorize(_auth_url(provider, client.client_id, redirect, verifier))).query)
    resp = http.post(provider.token_url, data={**form, "code": code["code"][0], "redirect_uri": redirect + "x"},
                     auth=(client.client_id, client.client_secret))  # fmt: skip
    assert resp.status_code == 400 and "redirect_uri" in resp.json()["error_description"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"prompt": None}, "prompt"),
        ({"access_type": "online"}, "access_type"),
        ({"code_challenge_method": "plain"}, "S256"),
        ({"state": None}, "state"),
        ({"scope": ""}, "scope"),
        ({"redirect_uri": "http://127.0.0.1:9/elsewhere"}, "not registered"),
        ({"client_id": "unknown"}, "unknown client_id"),
    ],
)
def test_authorize_checks_the_request(provider, override, message):
    redirect = "http://127.0.0.1:9/cb"
    client, _ = provider.new_web_client([redirect])
    with pytest.raises(AssertionError, match=message):
        provider.authorize(_auth_url(provider, client.client_id, redirect, secrets.token_urlsafe(48), override))
