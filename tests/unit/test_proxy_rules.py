"""Pure proxy pieces: header rules both ways, URL building, Location rewriting, static injectors."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from vault_proxy.injectors import injector_for
from vault_proxy.injectors.static import mask_url_token
from vault_proxy.outbound.destination import resolve
from vault_proxy.proxy.headers import caller_response_headers, upstream_request_headers
from vault_proxy.proxy.target import proxied_tail, rewrite_location
from vault_proxy.vault.validation import ServiceValidationError, parse_service


def frozen(pairs: list[tuple[str, str]]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_request_headers_drop_token_hop_by_hop_and_vault_headers():
    incoming = frozen([
        ("Host", "127.0.0.1:8390"), ("Authorization", "Bearer vault-token"), ("X-Vault-Token", "t2"),
        ("X-Vault-Anything", "x"), ("Connection", "keep-alive, X-Custom-Hop"), ("X-Custom-Hop", "1"),
        ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "X"), ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"), ("Proxy-Authorization", "Basic x"), ("Proxy-Connection", "keep-alive"),
        ("Expect", "100-continue"), ("Accept", "application/json"), ("X-Request-Id", "abc"),
        ("Content-Length", "12"),
    ])  # fmt: skip
    out = upstream_request_headers(incoming, token_header="Authorization", inject=[("Authorization", "Bearer real")])
    assert dict(out) == {
        "Accept": "application/json",
        "X-Request-Id": "abc",
        "Content-Length": "12",
        "Authorization": "Bearer real",
    }


def test_x_api_key_dropped_only_when_it_carried_the_token():
    incoming = frozen([("x-api-key", "vault-token"), ("Accept", "*/*")])
    assert "x-api-key" not in upstream_request_headers(incoming, token_header="x-api-key", inject=[])
    kept = upstream_request_headers(incoming, token_header="Authorization", inject=[])
    assert kept["x-api-key"] == "vault-token"
    injected = upstream_request_headers(incoming, token_header="x-api-key", inject=[("X-Api-Key", "real")])
    assert injected.getall("x-api-key") == ["real"]


def test_injected_header_replaces_a_caller_copy_and_cookie_merges():
    incoming = frozen([("X-Key", "caller"), ("Cookie", "a=1"), ("Accept-Encoding", "zstd")])
    out = upstream_request_headers(
        incoming, token_header=None, inject=[("X-Key", "real")], accept_encoding="gzip, br", cookie="s=2"
    )
    assert out.getall("X-Key") == ["real"]
    assert out["Cookie"] == "a=1; s=2"
    assert out["Accept-Encoding"] == "gzip, br"
    assert "Accept-Encoding" not in upstream_request_headers(
        frozen([]), token_header=None, inject=[], accept_encoding="gzip"
    )


def test_response_headers_rules():
    upstream = frozen([
        ("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Connection", "close, X-Hop"),
        ("X-Hop", "1"), ("Transfer-Encoding", "chunked"), ("Content-Security-Policy", "x"),
        ("X-Frame-Options", "ALLOW"), ("Strict-Transport-Security", "max-age=1"), ("Access-Control-Allow-Origin", "*"),
        ("X-Vault-Error", "1"), ("Server", "nginx/1.2"), ("Content-Encoding", "gzip"), ("Content-Length", "10"),
        ("ETag", "\"v1\""), ("Cache-Control", "public"),
    ])  # fmt: skip
    kept = caller_response_headers(upstream, keep_encoding=True)
    assert dict(kept) == {"Content-Type": "text/plain", "Content-Encoding": "gzip", "ETag": '"v1"'}
    assert "Content-Encoding" not in caller_response_headers(upstream, keep_encoding=False)


@pytest.mark.parametrize(
    ("base", "raw", "expected"),
    [
        ("https://a.test/v1", "/proxy/s/x%2Fy%3Fz%23w?q=%3F&&a=b+c", "https://a.test/v1/x%2Fy%3Fz%23w?q=%3F&&a=b+c"),
        ("https://a.test/v1/", "/proxy/s/models", "https://a.test/v1/models"),
        ("https://a.test/v1", "/proxy/s", "https://a.test/v1"),
        ("https://a.test/v1", "/proxy/s/", "https://a.test/v1/"),
        ("https://a.test/api?key=K", "/proxy/s/p?z=1", "https://a.test/api/p?key=K&z=1"),
        ("https://a.test", "/proxy/s/?", "https://a.test/"),  # yarl drops an empty query
    ],
)
def test_upstream_url_keeps_the_callers_encoding(base, raw, expected):
    assert str(resolve(base, proxied_tail(raw, "s")).url) == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v1/next?a=1", "/proxy/svc/next?a=1"),
        ("https://a.test/v1", "/proxy/svc"),
        ("other", "/proxy/svc/x/other"),
        ("https://elsewhere.test/v1/x", "https://elsewhere.test/v1/x"),
        ("/v10/x", "https://a.test/v10/x"),
        ("/", "https://a.test/"),
    ],
)
def test_location_rewrite(location, expected):
    assert rewrite_location(location, URL("https://a.test/v1/x/y"), "https://a.test/v1", "svc") == expected


async def _credential(body):
    service = parse_service({"name": "s", "base_url": "https://a.test/v1", **body})
    return service, await injector_for(service.auth.type).credential(service)


async def test_static_injectors():
    _, bearer = await _credential({"auth": {"type": "bearer", "token": "tok-1234"}})
    assert bearer.headers == (("Authorization", "Bearer tok-1234"),) and bearer.secrets == ("tok-1234",)
    _, header = await _credential({"auth": {"type": "header", "header_name": "X-Key", "header_value": "v-1234"}})
    assert header.headers == (("X-Key", "v-1234"),)
    _, basic = await _credential({"auth": {"type": "basic", "username": "u", "password": "p:w-1234"}})
    assert basic.headers == (("Authorization", "Basic " + base64.b64encode(b"u:p:w-1234").decode()),)
    assert basic.basic_pairs == (("u", "p:w-1234"),)
    service, url = await _credential(
        {"base_url": "https://a.test/bot{token}/", "auth": {"type": "url", "token": "12:a/b?c"}}
    )
    assert url.base_url == "https://a.test/bot12:a%2Fb%3Fc/" and url.headers == ()
    assert (
        mask_url_token(service, "GET https://a.test/bot12:a%2Fb%3Fc/x failed") == "GET https://a.test/bot***/x failed"
    )
    assert "tok-1234" not in repr(bearer)


def test_plain_http_needs_tls_skip_verify():
    with pytest.raises(ServiceValidationError, match="https"):
        parse_service({"name": "s", "base_url": "http://a.test", "auth": {"type": "bearer", "token": "t-1234"}})
    ok = parse_service(
        {"name": "s", "base_url": "http://a.test", "tls_skip_verify": True, "auth": {"type": "bearer", "token": "t-1"}}
    )
    assert ok.tls_skip_verify
