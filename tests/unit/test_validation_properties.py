"""Property tests: untrusted JSON never crashes the validators with anything but a clear error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vault_proxy.durations import parse_duration
from vault_proxy.vault.models import AUTH_TYPES
from vault_proxy.vault.validation import ServiceValidationError, parse_service

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["token", "header_name", "header_value", "username", "password", "client_id", "client_secret", "token_url",
     "refresh_token", "file_ref", "ssh_host", "ssh_port", "ssh_user", "ssh_key_file_ref", "ssh_host_key",
     "imap_host", "imap_user", "imap_password", "imap_tls", "redis_host", "redis_db", "postgres_tls", "scopes"]
)  # fmt: skip
auth_bodies = st.fixed_dictionaries({"type": st.sampled_from(AUTH_TYPES) | json_values}, optional={}).flatmap(
    lambda base: st.dictionaries(field_names, json_values, max_size=6).map(lambda extra: {**extra, **base})
)
service_bodies = st.fixed_dictionaries(
    {"name": st.text(max_size=12) | json_values, "auth": auth_bodies | json_values},
    optional={"base_url": st.sampled_from(["https://a.example", "http://x/{token}", "", "ftp://x"]) | json_values,
              "tls_skip_verify": json_values, "max_request_mb": json_values},
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(service_bodies)
def test_any_body_validates_or_fails_cleanly(body):
    try:
        service = parse_service(body)
    except ServiceValidationError as exc:
        assert str(exc)
    else:
        assert parse_service(service.stored_dict()) == service


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=16))
def test_durations_parse_or_raise_value_error(text):
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert seconds > 0
