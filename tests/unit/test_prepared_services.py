"""The per-service preparation cache: reused while the service object lives, never after it changes."""

from __future__ import annotations

import asyncio

from vault_proxy.injectors import injector_for
from vault_proxy.proxy.prepared import MAX_REMEMBERED_URLS, PreparedServices
from vault_proxy.vault.models import Service


def _service(token: str, *, redact: bool = True) -> Service:
    return Service.model_validate(
        {"name": "api", "base_url": "https://api.example.com/v1", "redact_responses": redact,
         "auth": {"type": "bearer", "token": token}}
    )  # fmt: skip


def _prepare(cache: PreparedServices, service: Service):
    injector = injector_for(service.auth.type)
    credential = asyncio.run(injector.credential(service))
    return cache.prepare(service, credential, static=injector.static)


def test_reused_only_for_the_same_service_object():
    cache = PreparedServices()
    first = _service("token-one-1234")
    prepared = _prepare(cache, first)
    assert cache.cached(first) is prepared
    replaced = _service("token-two-5678")  # what an update or an unlock produces
    assert cache.cached(replaced) is None
    again = _prepare(cache, replaced)
    assert again.credential.headers == (("Authorization", "Bearer token-two-5678"),)
    assert again.scrubber.scrub(b"x token-two-5678 y")[1] == 1
    assert again.scrubber.scrub(b"token-one-1234")[1] == 0


def test_drop_and_clear_forget_everything():
    cache = PreparedServices()
    service = _service("token-one-1234")
    _prepare(cache, service)
    cache.drop("api")
    assert cache.cached(service) is None
    _prepare(cache, service)
    cache.clear()
    assert cache.cached(service) is None


def test_non_static_credentials_are_not_kept():
    cache = PreparedServices()
    service = _service("token-one-1234")
    credential = asyncio.run(injector_for("bearer").credential(service))
    cache.prepare(service, credential, static=False)
    assert cache.cached(service) is None


def test_url_memo_is_bounded_and_keeps_encoding():
    prepared = _prepare(PreparedServices(), _service("token-one-1234"))
    assert str(prepared.destination("/a%2Fb?q=%3F").url) == "https://api.example.com/v1/a%2Fb?q=%3F"
    assert prepared.destination("/a%2Fb?q=%3F") is prepared.destination("/a%2Fb?q=%3F")
    for i in range(MAX_REMEMBERED_URLS + 10):
        prepared.destination(f"/item/{i}")
    assert len(prepared._urls) <= MAX_REMEMBERED_URLS
