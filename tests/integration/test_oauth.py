"""OAuth2 refresh-token services, Google service accounts and the browser consent flow, end to end.

The vault talks to a real local HTTPS OAuth2 server (tests/peers/oauth_provider.py, same test CA as the
upstream) that verifies every grant, and calls its protected API, which accepts only valid tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from helpers import create_token, unique, upload_file
from oauth_provider import OAuthProvider


@pytest.fixture(scope="module")
def provider(upstream, tmp_path_factory) -> OAuthProvider:
    peer = OAuthProvider(upstream.ca, Path(tmp_path_factory.mktemp("oauth"))).start()
    yield peer
    peer.stop()


def _oauth_service(env, provider: OAuthProvider, client, **extra) -> str:
    env.secrets.add(client.client_secret, client.refresh_token)
    auth = {"type": "oauth2_client", "client_id": client.client_id, "client_secret": client.client_secret,
            "token_url": provider.token_url, "refresh_token": client.refresh_token, **extra}  # fmt: skip
    return env.add(auth, base_url=provider.api_url)


def _call(env, name: str, path: str = "/whoami", **kwargs) -> httpx.Response:
    return env.call("GET", name, path, **kwargs)


def _info(env, name: str) -> dict:
    resp = env.server.http.get(f"/services/{name}", headers=env.server.admin_headers())
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_first_call_refreshes_then_token_is_reused(proxy_env, provider):
    client = provider.new_client()
    name = _oauth_service(proxy_env, provider, client, scopes=["read"])
    info = _info(proxy_env, name)
    assert info["token_status"] == "expired" and "access_token" not in json.dumps(info)
    for _ in range(5):
        resp = _call(proxy_env, name)
        assert resp.status_code == 200, resp.text
        assert resp.json()["ok"] is True
    assert provider.refresh_count(client.client_id) == 1
    info = _info(proxy_env, name)
    assert info["token_status"] == "valid" and info["expires_at"].endswith("Z")
    health = proxy_env.server.http.get("/health/tokens", headers={"Authorization": f"Bearer {proxy_env.token()}"})
    assert health.status_code == 200
    row = next(r for r in health.json() if r["name"] == name)
    assert row == {
        "name": name,
        "auth_type": "oauth2_client",
        "expires_at": info["expires_at"],
        "token_status": "valid",
    }
    events = [e for e in proxy_env.audit() if e.get("action") == "oauth.refresh" and e.get("service") == name]
    assert len(events) == 1


def test_hundred_concurrent_callers_cause_one_refresh(proxy_env, provider):
    client = provider.new_client()
    name = _oauth_service(proxy_env, provider, client)
    token = proxy_env.token()

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=proxy_env.server.addr, timeout=60) as http:
            calls = [http.get(f"/proxy/{name}/whoami", headers={"Authorization": f"Bearer {token}"})
                     for _ in range(100)]  # fmt: skip
            return [r.status_code for r in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())
    assert statuses == [200] * 100
    assert provider.refresh_count(client.client_id) == 1


def test_rotated_refresh_token_survives_restart(proxy_env, provider):
    client = provider.new_client(rotate=True)
    name = _oauth_service(proxy_env, provider, client)
    assert _call(proxy_env, name).status_code == 200
    assert len(client.refresh_tokens) == 2, "the provider rotated the refresh token"
    proxy_env.secrets.add(client.refresh_token)
    server = proxy_env.server
    server.restart()
    server.unlock()
    proxy_env._token = None
    provider.expire_all()
    # The stored access token is no longer accepted upstream, but the vault still thinks it is
    # valid: force a refresh by making the cached one look expired (an update that keeps tokens).
    resp = server.http.put(f"/services/{name}", json={"name": name, "base_url": provider.api_url, "auth": {
        "type": "oauth2_client", "client_id": client.client_id, "client_secret": client.client_secret,
        "token_url": provider.token_url, "expires_at": "2000-01-01T00:00:00Z"}}, headers=server.admin_headers())  # fmt: skip
    assert resp.status_code == 200, resp.text
    resp = _call(proxy_env, name)
    assert resp.status_code == 200, resp.text  # only works with the rotated token persisted before the restart
    assert provider.refresh_count(client.client_id) == 2
    assert len(client.refresh_tokens) == 3
    proxy_env.secrets.add(client.refresh_token)


def test_token_close_to_expiry_is_refreshed(proxy_env, provider):
    client = provider.new_client(expires_in=32)  # inside the 30 s margin two seconds later
    name = _oauth_service(proxy_env, provider, client)
    assert _call(proxy_env, name).status_code == 200
    assert _call(proxy_env, name).status_code == 200
    assert provider.refresh_count(client.client_id) == 1
    time.sleep(2.5)
    assert _call(proxy_env, name).status_code == 200
    assert provider.refresh_count(client.client_id) == 2


def test_missing_expires_in_does_not_refresh_every_call(proxy_env, provider):
    client = provider.new_client(expires_in=None)
    name = _oauth_service(proxy_env, provider, client)
    for _ in range(3):
        assert _call(proxy_env, name).status_code == 200
    assert provider.refresh_count(client.client_id) == 1
    assert _info(proxy_env, name)["token_status"] == "valid"


@pytest.mark.parametrize("mode", ["400", "500", "html"])
def test_refresh_failure_is_502_without_the_endpoint_body(proxy_env, provider, mode):
    client = provider.new_client(fail=mode)
    name = _oauth_service(proxy_env, provider, client)
    resp = _call(proxy_env, name)
    assert resp.status_code == 502
    assert resp.json() == {"error": "credential refresh failed"}
    assert OAuthProvider.PLANTED not in resp.text and client.client_secret not in resp.text
    line = [e for e in proxy_env.proxy_audit(name)][-1]
    assert line["status"] == 502 and "token endpoint answered" in line["error"]
    assert client.client_secret not in json.dumps(line)
    if mode != "html":
        assert mode in line["error"]


def _upload_json(env, doc: dict, label: str) -> str:
    name = unique(label) + ".json"
    resp = upload_file(env.server, name, json.dumps(doc).encode(), "application/json")
    assert resp.status_code in (200, 201), resp.text
    return name


@pytest.mark.parametrize("pkcs1", [False, True], ids=["pkcs8", "pkcs1"])
def test_service_account_exchange(proxy_env, provider, pkcs1):
    account = provider.new_service_account(pkcs1=pkcs1, scopes_required=["https://scope/a"])
    proxy_env.secrets.add(account.key_json["private_key"].splitlines()[1])
    file_ref = _upload_json(proxy_env, account.key_json, "sa")
    name = proxy_env.add({"type": "service_account", "file_ref": file_ref, "sa_scopes": ["https://scope/a"],
                          "sa_subject": "user@example.com"}, base_url=provider.api_url)  # fmt: skip
    for _ in range(2):
        resp = _call(proxy_env, name)
        assert resp.status_code == 200, resp.text
    assert account.subject_seen == "user@example.com"
    assert sum(1 for g in provider.grants() if g.get("iss") == account.client_email and g["status"] == 200) == 1
    assert _info(proxy_env, name)["token_status"] == "valid"


def test_file_based_client_setup(proxy_env, provider):
    client, client_json = provider.new_web_client(["http://127.0.0.1/cb"])
    proxy_env.secrets.add(client.client_secret, client.refresh_token)
    secret_file = _upload_json(proxy_env, client_json, "client")
    token_file = _upload_json(proxy_env, {"refresh_token": client.refresh_token}, "tok")
    name = proxy_env.add({"type": "oauth2_client", "client_secret_file": secret_file, "token_file": token_file},
                         base_url=provider.api_url)  # fmt: skip
    resp = _call(proxy_env, name)
    assert resp.status_code == 200, resp.text
    assert provider.refresh_count(client.client_id) == 1


def test_browser_consent_flow_creates_a_working_service(proxy_env, provider):
    server = proxy_env.server
    redirect = f"{server.addr}/auth/oauth2/callback"
    client, client_json = provider.new_web_client([redirect], kind="web")
    proxy_env.secrets.add(client.client_secret)
    secret_file = _upload_json(proxy_env, client_json, "web-client")
    name = unique("consent")
    body = {"client_secret_file": secret_file, "service_name": name, "base_url": provider.api_url,
            "scopes": ["read", "write"]}  # fmt: skip
    resp = server.http.post("/auth/oauth2/authorize", json=body, headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
    started = resp.json()
    assert started["redirect_uri"] == redirect and started["state"] in started["auth_url"]
    assert client.client_secret not in resp.text
    back = provider.authorize(started["auth_url"])  # the user approves in the browser
    page = httpx.get(back, timeout=30)  # the browser follows the redirect to the vault
    assert page.status_code == 200 and "created" in page.text, page.text
    assert _call(proxy_env, name).status_code == 200
    assert _info(proxy_env, name)["token_status"] == "valid"
    again = httpx.get(back, timeout=30)
    assert again.status_code == 400, "a state is single-use"
    resp = server.http.post("/auth/oauth2/authorize", json=body, headers=server.admin_headers())
    assert resp.status_code == 409, resp.text
    resp = server.http.post("/auth/oauth2/authorize", json={**body, "overwrite": True}, headers=server.admin_headers())
    assert resp.status_code == 200, resp.text


def test_consent_with_wrong_verifier_state_or_denial_fails(proxy_env, provider):
    server = proxy_env.server
    client, client_json = provider.new_web_client([f"{server.addr}/auth/oauth2/callback"])
    proxy_env.secrets.add(client.client_secret)
    secret_file = _upload_json(proxy_env, client_json, "client")
    body = {"client_secret_file": secret_file, "service_name": unique("denied"), "base_url": provider.api_url}
    started = server.http.post("/auth/oauth2/authorize", json=body, headers=server.admin_headers()).json()
    denied = httpx.get(f"{server.addr}/auth/oauth2/callback?error=access_denied&state={started['state']}")
    assert denied.status_code == 400 and "denied" in denied.text
    forged = httpx.get(f"{server.addr}/auth/oauth2/callback?code=x&state=not-a-state")
    assert forged.status_code == 400
    names = [s["name"] for s in server.http.get("/services", headers=server.admin_headers()).json()]
    assert body["service_name"] not in names


def test_restricted_token_sees_only_its_oauth_services(proxy_env, provider):
    client = provider.new_client()
    name = _oauth_service(proxy_env, provider, client)
    other = create_token(proxy_env.server, {"scope": "proxy", "services": [unique("none")]})["id"]
    rows = proxy_env.server.http.get("/health/tokens", headers={"Authorization": f"Bearer {other}"}).json()
    assert all(r["name"] != name for r in rows)


def test_token_url_from_an_uploaded_file_obeys_the_ssrf_policy(strict_proxy_env, provider):
    """Without --allow-private the loopback token endpoint named in a client JSON is never called."""
    env = strict_proxy_env
    client, client_json = provider.new_web_client(["http://127.0.0.1/cb"])
    env.secrets.add(client.client_secret, client.refresh_token)
    secret_file = _upload_json(env, client_json, "client")
    token_file = _upload_json(env, {"refresh_token": client.refresh_token}, "tok")
    before = provider.refresh_count(client.client_id)
    name = env.add({"type": "oauth2_client", "client_secret_file": secret_file, "token_file": token_file},
                   base_url="https://api.example.com")  # fmt: skip
    resp = _call(env, name)
    assert resp.status_code == 502 and resp.json() == {"error": "credential refresh failed"}
    assert provider.refresh_count(client.client_id) == before
    assert "not allowed" in env.proxy_audit(name)[-1]["error"]


def test_cli_authorize_with_a_local_client_file_and_token_listing(proxy_env, provider, tmp_path):
    server = proxy_env.server
    client, client_json = provider.new_web_client([f"{server.addr}/auth/oauth2/callback"])
    proxy_env.secrets.add(client.client_secret)
    local = tmp_path / f"{unique('client')}.json"
    local.write_text(json.dumps(client_json))
    name = unique("cli-consent")
    env = {"VAULT_TOKEN": server.admin_token}
    done = server.cli("oauth2", "authorize", "--client-secret-file", str(local), "--service", name,
                      "--base-url", provider.api_url, "--scope", "read", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    auth_url = done.stdout.strip()
    assert auth_url.startswith(provider.authorize_url) and "scope=read" in auth_url
    assert client.client_secret not in done.stdout + done.stderr
    assert httpx.get(provider.authorize(auth_url), timeout=30).status_code == 200
    listed = server.cli("oauth2", "tokens", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == name)
    assert row["token_status"] == "valid" and row["auth_type"] == "oauth2_client"
    table = server.cli("oauth2", "tokens", env=env)
    assert name in table.stdout and "valid" in table.stdout
    again = server.cli("oauth2", "authorize", "--client-secret-file", str(local), "--service", name,
                       "--base-url", provider.api_url, "--scope", "read", env=env)  # fmt: skip
    assert again.returncode == 1
    assert again.stderr == f'error: service "{name}" already exists (add --overwrite to replace it)\n'


def test_proactive_refresh_before_expiry_and_none_after_delete(proxy_env, provider):
    """A 34 s token is renewed ~31 s later (90 % of its life) without any call; a deleted service's is not."""
    kept_client, gone_client = provider.new_client(expires_in=34), provider.new_client(expires_in=34)
    kept = _oauth_service(proxy_env, provider, kept_client)
    gone = _oauth_service(proxy_env, provider, gone_client)
    assert _call(proxy_env, kept).status_code == 200 and _call(proxy_env, gone).status_code == 200
    resp = proxy_env.server.http.delete(f"/services/{gone}", headers=proxy_env.server.admin_headers())
    assert resp.status_code == 200
    deadline = time.monotonic() + 40
    while provider.refresh_count(kept_client.client_id) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert provider.refresh_count(kept_client.client_id) == 2, "no proactive refresh within 40 s"
    assert provider.refresh_count(gone_client.client_id) == 1
    assert _call(proxy_env, kept).status_code == 200
    assert provider.refresh_count(kept_client.client_id) == 2, "the call used the proactively renewed token"
