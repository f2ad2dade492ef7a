"""Every field of every JSON request model refuses a value of the wrong JSON type with a 400 that names
the field, never a 500 and never a silent coercion ("yes" is not true, 1 is not true, "5" is not 5)
(SPEC §3). The models: a service body (each auth type), ``POST /tokens``, ``/auth/unlock``, ``/auth/passwd``.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from vault_proxy.server.bodies import parse_body
from vault_proxy.server.errors import BadRequest
from vault_proxy.server.handlers.auth import PasswdRequest, UnlockRequest
from vault_proxy.server.handlers.tokens import TokenRequest
from vault_proxy.vault import models
from vault_proxy.vault.validation import ServiceValidationError, parse_service

BASE_URL = "https://api.example.com"
VALID_AUTH: dict[str, dict[str, Any]] = {
    "bearer": {"token": "t0k"},
    "header": {"header_name": "X-Api-Key", "header_value": "v"},
    "basic": {"username": "u", "password": "p"},
    "url": {"token": "t0k"},
    "oauth2_client": {
        "client_id": "c",
        "client_secret": "s",
        "token_url": "https://o.example.com/t",
        "refresh_token": "r",
    },
    "service_account": {"file_ref": "sa.json"},
    "ssh_key": {"ssh_host": "h.example.com", "ssh_user": "u", "ssh_key_file_ref": "k"},
    "imap": {"imap_host": "h", "imap_user": "u", "imap_password": "p"},
    "smtp": {"smtp_host": "h", "smtp_user": "u", "smtp_password": "p"},
    "redis": {"redis_host": "h"},
    "postgres": {"postgres_host": "h", "postgres_user": "u", "postgres_password": "p", "postgres_db": "d"},
}
AUTH_MODELS = {model.model_fields["type"].annotation.__args__[0]: model for model in get_args(get_args(models.Auth)[0])}
# Fields that accept more than their stored type says: the Go tool's unix-seconds expiry (SPEC §8).
EXTRA_KINDS = {"expires_at": {"int", "number"}}

JSON_VALUES = {
    "string": st.text(max_size=8),
    "int": st.integers(-(10**6), 10**6),
    "number": st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
    "bool": st.booleans(),
    "list": st.lists(st.integers(), min_size=1, max_size=3),
    "object": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "null": st.none(),
}


def _kinds(annotation: Any) -> set[str]:
    """The JSON kinds a field annotation admits in strict mode."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in get_args(annotation)))
    if origin is Literal:
        return {"string"}
    if origin is list:
        return {"list"}
    if annotation is type(None):
        return {"null"}
    if annotation is bool:
        return {"bool"}
    if annotation is int:
        return {"int"}
    if annotation is float:
        return {"int", "number"}
    if annotation in (str, SecretStr):
        return {"string"}
    raise AssertionError(f"no JSON kinds known for {annotation!r}")


def _wrong_values(model: type[BaseModel], field: str) -> st.SearchStrategy[Any]:
    info = model.model_fields[field]
    accepted = _kinds(info.annotation) | EXTRA_KINDS.get(field, set())
    wrong = [JSON_VALUES[kind] for kind in JSON_VALUES if kind not in accepted]
    if "list" in accepted:  # a list of the wrong items is wrong too
        wrong.append(st.lists(st.one_of(st.integers(), st.booleans(), st.none()), min_size=1, max_size=3))
    return st.one_of(wrong)


SERVICE_CASES = [(kind, None, field) for kind, model in AUTH_MODELS.items() for field in model.model_fields
                 if field != "type"]  # fmt: skip
SERVICE_CASES += [("bearer", models.Service, field) for field in models.Service.model_fields if field != "auth"]


def _service_body(kind: str) -> dict[str, Any]:
    base_url = BASE_URL + ("/{token}" if kind == "url" else "")
    return {"name": "svc", "base_url": base_url, "auth": {"type": kind, **VALID_AUTH[kind]}}


@pytest.mark.parametrize("kind", sorted(VALID_AUTH))
def test_valid_bodies_are_accepted(kind):
    assert parse_service(_service_body(kind)).auth.type == kind


@pytest.mark.parametrize(("kind", "top", "field"), SERVICE_CASES, ids=[f"{k}.{f}" for k, _, f in SERVICE_CASES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_service_field_of_the_wrong_type_is_refused_naming_it(kind, top, field, data):
    body = _service_body(kind)
    model = top or AUTH_MODELS[kind]
    value = data.draw(_wrong_values(model, field), label=field)
    (body if top else body["auth"])[field] = value
    with pytest.raises(ServiceValidationError) as caught:
        parse_service(body)
    assert field in str(caught.value), (field, value, str(caught.value))


BODY_MODELS = {
    TokenRequest: {"scope": "proxy"},
    UnlockRequest: {"password": "correct horse"},
    PasswdRequest: {"current_password": "old password", "new_password": "new password"},
}
BODY_CASES = [(model, field) for model in BODY_MODELS for field in model.model_fields]


@pytest.mark.parametrize(("model", "field"), BODY_CASES, ids=[f"{m.__name__}.{f}" for m, f in BODY_CASES])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_request_field_of_the_wrong_type_is_a_400_naming_it(model, field, data):
    body = dict(BODY_MODELS[model])
    body[field] = data.draw(_wrong_values(model, field), label=field)
    with pytest.raises(BadRequest) as caught:
        parse_body(model, body)
    assert field in str(caught.value)


@pytest.mark.parametrize(("model", "field"), [(m, f) for m, f in BODY_CASES if BODY_MODELS[m].get(f) is not None])
def test_required_request_field_missing_is_a_400_naming_it(model, field):
    body = {k: v for k, v in BODY_MODELS[model].items() if k != field}
    with pytest.raises(BadRequest, match=f"{field} is required"):
        parse_body(model, body)
    parse_body(model, BODY_MODELS[model])
