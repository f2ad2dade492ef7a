"""Property tests: the proxy's header rules hold for any headers, in any case and order (SPEC §3, §9).

Upstream requests never carry the header that held the vault token, ``Host``, ``Expect``, a hop-by-hop
header (the fixed ones and whatever ``Connection`` names) or ``X-Vault-*``; the credential appears exactly
once; every other caller header goes through unchanged and in order. Responses never carry ``Set-Cookie``,
hop-by-hop, ``X-Vault-*``, CORS or the security headers the vault sets itself.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from vault_proxy.proxy.headers import HOP_BY_HOP, caller_response_headers, upstream_request_headers

SETTINGS = settings(max_examples=200, deadline=None)
TOKEN_HEADERS = ["Authorization", "X-Vault-Token", "x-api-key"]
VAULT_SECURITY = {"content-security-policy", "content-security-policy-report-only", "x-frame-options",
                  "strict-transport-security", "x-content-type-options", "cache-control", "referrer-policy",
                  "permissions-policy", "cross-origin-opener-policy", "cross-origin-embedder-policy",
                  "cross-origin-resource-policy"}  # fmt: skip

token_chars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
plain_names = st.text(token_chars, min_size=1, max_size=12)
special_names = st.sampled_from(
    [*HOP_BY_HOP, "host", "expect", "x-vault-token", "x-vault-anything", "x-vault-", "authorization", "x-api-key",
     "cookie", "accept-encoding", "set-cookie", "server", "date", "content-length", "content-encoding",
     "access-control-allow-origin", "x-custom", *VAULT_SECURITY]
)  # fmt: skip


def _random_case(draw, name: str) -> str:
    mask = draw(st.integers(0, 2 ** len(name) - 1))  # bit i set: character i upper-cased
    return "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(name))


@st.composite
def header_lists(draw) -> list[tuple[str, str]]:
    names = draw(st.lists(special_names | plain_names, max_size=12))
    values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
    headers = [(_random_case(draw, name), draw(values)) for name in names]
    if draw(st.booleans()):  # a Connection header naming some of them (and others)
        listed = draw(st.lists(special_names | plain_names | st.sampled_from([n for n, _ in headers] or ["x"]),
                               max_size=4))  # fmt: skip
        sep = draw(st.sampled_from([",", ", ", " ,", ",,"]))
        headers.insert(draw(st.integers(0, len(headers))), (_random_case(draw, "connection"), sep.join(listed)))
    return headers


def _connection_listed(headers: list[tuple[str, str]]) -> set[str]:
    return {
        part.strip().lower() for n, v in headers if n.lower() == "connection" for part in v.split(",") if part.strip()
    }


@SETTINGS
@given(
    header_lists(),
    st.sampled_from(TOKEN_HEADERS) | st.none(),
    st.lists(st.tuples(st.sampled_from(["Authorization", "X-Api-Key", "x-custom"]), st.text("abc", max_size=5)),
             max_size=2, unique_by=lambda item: item[0].lower()),
    st.none() | st.just("gzip, deflate, br"),
    st.none() | st.just("jar=1"),
)  # fmt: skip
def test_upstream_request_headers(headers, token_header, inject, accept_encoding, cookie) -> None:
    incoming = CIMultiDictProxy(CIMultiDict(headers))
    out = upstream_request_headers(incoming, token_header=token_header, inject=inject,
                                   accept_encoding=accept_encoding, cookie=cookie)  # fmt: skip
    injected = {name.lower() for name, _ in inject} | ({"cookie"} if cookie else set())  # the jar's Cookie is ours
    dropped = set(HOP_BY_HOP) | {"host", "expect", "x-vault-token"} | _connection_listed(headers)
    if token_header:
        dropped.add(token_header.lower())
    for name in out:
        low = name.lower()
        if low in injected:
            continue
        assert low not in dropped, (name, headers)
        assert not low.startswith("x-vault-"), name
    for name, value in inject:  # the credential, exactly once, with its value
        assert out.getall(name) == [value]
    # Everything else passes unchanged and in order (Accept-Encoding / Cookie may be rewritten).
    kept = [
        (n, v) for n, v in headers if (low := n.lower()) not in dropped | injected and not low.startswith("x-vault-")
    ]
    rewritten = {"accept-encoding"} if accept_encoding else set()
    if cookie:
        rewritten.add("cookie")
    expected = [(n.lower(), v) for n, v in kept if n.lower() not in rewritten]
    actual = [(n.lower(), v) for n, v in out.items() if n.lower() not in injected | rewritten]
    assert actual == expected
    if cookie:
        assert out.getall("Cookie")[-1].endswith(cookie)
    if accept_encoding and any(n.lower() == "accept-encoding" for n, _ in kept):
        assert out.getall("Accept-Encoding") == [accept_encoding]


@SETTINGS
@given(header_lists(), st.booleans())
def test_caller_response_headers(headers, keep_encoding: bool) -> None:
    out = caller_response_headers(CIMultiDictProxy(CIMultiDict(headers)), keep_encoding=keep_encoding)
    dropped = set(HOP_BY_HOP) | VAULT_SECURITY | {"set-cookie", "set-cookie2", "content-length", "server", "date"}
    dropped |= _connection_listed(headers)
    if not keep_encoding:
        dropped.add("content-encoding")
    for name in out:
        low = name.lower()
        assert low not in dropped and not low.startswith(("x-vault-", "access-control-")), (name, headers)
    expected = [(n.lower(), v) for n, v in headers
                if (low := n.lower()) not in dropped and not low.startswith(("x-vault-", "access-control-"))]  # fmt: skip
    assert [(n.lower(), v) for n, v in out.items()] == expected
