"""Property tests: any service JSON is a Service or a ServiceValidationError (a 400), never a crash or a leak.

Bodies are built from each auth model's real field names with values of the right and of every wrong
JSON type, so the validators behind each field are reached, not only the type check. Secrets placed in the
secret fields never appear in an error message nor in the ServiceInfo. Through the real aiohttp app, any
body to ``POST /services`` and ``PUT /services/{name}`` is a 201/200 or a JSON 400 (or 413), never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from vault_proxy.server.app import create_app
from vault_proxy.server.config import ServerConfig
from vault_proxy.server.context import CONTEXT
from vault_proxy.vault import models
from vault_proxy.vault.info import service_info
from vault_proxy.vault.validation import ServiceValidationError, parse_service

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MARK = "zz-SECRET-MARK-91"  # every secret field holds this (plus noise): it must never be echoed
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"
AUTH_MODELS = {model.model_fields["type"].annotation.__args__[0]: model for model in models.Auth.__origin__.__args__}

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8
)
plausible_text = st.sampled_from(
    ["", " ", "x", "X-Api-Key", "host", "Content-Length", "x-vault-token", "a b", "h.example.com", "127.0.0.1",
     "https://api.example.com/v1", "http://x/{token}", "https://1.2.3/", "https://0x7f.1/", "ftp://x", "/tmp/a",
     "relative/path", ED25519, "ssh-ed25519 AAAA", "implicit", "starttls", "none", "require", "prefer", "disable",
     "2026-11-28T17:30:30Z", "sa.json", "\x00", "é"]
)  # fmt: skip


def _is_secret(model: type, field: str) -> bool:
    return "SecretStr" in str(model.model_fields[field].annotation)


@st.composite
def auth_bodies(draw) -> dict:
    kind = draw(st.sampled_from(sorted(AUTH_MODELS)) | st.sampled_from(["", "Bearer", "ssh"]) | json_scalars)
    model = AUTH_MODELS.get(kind) if isinstance(kind, str) else None
    body: dict = {"type": kind}
    if model is None:
        return body
    for field in model.model_fields:
        if field == "type" or not draw(st.booleans()):
            continue
        if _is_secret(model, field):
            body[field] = draw(st.sampled_from([MARK, MARK + "-x", ""]) | st.just(None) | json_values)
        else:
            body[field] = draw(plausible_text | st.integers(-5, 70000) | st.lists(plausible_text, max_size=3)
                               | json_values)  # fmt: skip
    return body


service_bodies = st.fixed_dictionaries(
    {"auth": auth_bodies() | json_values},
    optional={"name": st.sampled_from(["svc", "a.b-c_d", "", "-x", "a b", "x" * 129]) | json_values,
              "base_url": plausible_text | json_values, "tls_skip_verify": st.booleans() | json_values,
              "session_cookies": st.booleans() | json_values, "redact_responses": st.booleans() | json_values,
              "max_request_mb": st.integers(-2, 5000) | json_values},
)  # fmt: skip


def _secret_strings(service: models.Service) -> list[str]:
    return [
        v.get_secret_value() for v in vars(service.auth).values() if isinstance(v, SecretStr) and v.get_secret_value()
    ]


@SETTINGS
@given(service_bodies, st.none() | st.text(max_size=10))
def test_any_service_body_is_a_service_or_a_clean_validation_error(body: dict, path_name: str | None) -> None:
    try:
        service = parse_service(body, name=path_name)
    except ServiceValidationError as exc:
        message = str(exc)
        assert message and MARK not in message
        return
    info = json.dumps(service_info(service))
    for secret in _secret_strings(service):
        assert secret not in info
    assert parse_service(service.stored_dict()) == service  # what the vault stores loads back the same


@pytest.fixture(scope="module")
def previous_services() -> list[models.Service]:
    return [
        parse_service({"name": "svc", "base_url": "https://api.example.com", "auth": {
            "type": "oauth2_client", "client_id": "c", "client_secret": "cs-SECRET", "token_url": "https://t.example",
            "refresh_token": "rt-SECRET", "access_token": "at-SECRET", "expires_at": "2030-01-01T00:00:00Z"}}),
        parse_service({"name": "svc", "auth": {"type": "ssh_key", "ssh_host": "h", "ssh_user": "u",
                                               "ssh_key_file_ref": "k", "ssh_host_key": ED25519}}),
        parse_service({"name": "svc", "base_url": "https://api.example.com",
                       "auth": {"type": "service_account", "file_ref": "sa.json", "access_token": "at-SECRET"}}),
    ]  # fmt: skip


@SETTINGS
@given(service_bodies, st.integers(0, 2))
def test_reposting_over_a_stored_service_validates_or_fails_cleanly(previous_services, body: dict, which: int) -> None:
    previous = previous_services[which]
    try:
        service = parse_service(body, name="svc", previous=previous)
    except ServiceValidationError as exc:
        assert str(exc) and MARK not in str(exc) and "SECRET" not in str(exc)
        return
    assert service.name == "svc"
    if service.auth.type == previous.auth.type == "ssh_key" and "ssh_host_key" not in body["auth"]:
        assert service.auth.ssh_host_key == previous.auth.ssh_host_key  # a pin is never dropped silently


# --- through the HTTP handlers ----------------------------------------------------------------------------

_LOOP = asyncio.new_event_loop()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    """The real app in-process, unlocked, with an admin token (one server for every example)."""
    data_dir: Path = tmp_path_factory.mktemp("vault")
    app = create_app(ServerConfig(data_dir=data_dir, audit_log=None))
    client = TestClient(TestServer(app), loop=_LOOP)
    _LOOP.run_until_complete(client.start_server())
    context = app[CONTEXT]
    _LOOP.run_until_complete(context.store.unlock("property-test-password"))
    token, _record = context.tokens.mint("admin")
    yield client, {"Authorization": f"Bearer {token}"}
    _LOOP.run_until_complete(client.close())
    _LOOP.close()


raw_bodies = (
    service_bodies.map(lambda b: json.dumps(b).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=60)
    | st.sampled_from([b"", b"{", b"\xff\xfe", b'{"auth": {"type": "bearer", "token": "' + MARK.encode() + b'"}'])
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_bodies, st.booleans(), st.sampled_from(["svc", "a.b-c", "bad name", "-x", "%00", "x" * 129]))
def test_service_writes_answer_201_200_or_a_json_400(api, raw: bytes, put: bool, name: str) -> None:
    client, headers = api

    async def call():
        if put:
            resp = await client.put(f"/services/{name}", data=raw, headers=headers)
        else:
            resp = await client.post("/services", data=raw, headers=headers)
        return resp.status, resp.content_type, await resp.read()

    status, content_type, body = _LOOP.run_until_complete(call())
    assert status in ((200, 400, 404, 413) if put else (201, 400, 413)), (status, body)
    assert content_type == "application/json"
    answer = json.loads(body)
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"] and MARK not in answer["error"]
    else:
        assert MARK not in body.decode()
