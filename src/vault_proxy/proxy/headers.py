"""The header rules of the proxy, both directions, in one place (SPEC §3, §9)."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1 hop-by-hop headers, plus the proxy-specific ones.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "proxy-connection",
     "te", "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
# Never sent upstream: these identify the caller to the vault, or are set by the vault itself.
_REQUEST_DROP = HOP_BY_HOP | {"host", "x-vault-token", "expect"}
# Never returned to the caller: the vault's own security headers win, and cookies stay server-side.
_RESPONSE_DROP = HOP_BY_HOP | {
    "set-cookie", "set-cookie2", "content-length", "server", "date",
    "content-security-policy", "content-security-policy-report-only", "x-frame-options",
    "strict-transport-security", "x-content-type-options", "cache-control", "referrer-policy",
    "permissions-policy", "cross-origin-opener-policy", "cross-origin-embedder-policy",
    "cross-origin-resource-policy",
}  # fmt: skip


def _connection_tokens(headers: CIMultiDictProxy[str]) -> set[str]:
    """Header names listed in ``Connection`` (they are hop-by-hop for this message too)."""
    names: set[str] = set()
    for value in headers.getall("Connection", ()):
        names.update(part.strip().lower() for part in value.split(",") if part.strip())
    return names


def upstream_request_headers(
    incoming: CIMultiDictProxy[str],
    *,
    token_header: str | None,
    inject: Iterable[tuple[str, str]],
    accept_encoding: str | None = None,
    cookie: str | None = None,
) -> CIMultiDict[str]:
    """Caller headers minus the vault token, Host, hop-by-hop and ``X-Vault-*``, plus the credential.

    ``token_header`` is the header that carried the vault token (``Authorization``, ``X-Vault-Token``
    or ``x-api-key``); it is dropped so the vault token never reaches the upstream.
    """
    drop = _connection_tokens(incoming)
    if token_header:
        drop.add(token_header.lower())
    injected = CIMultiDict(inject)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower in _REQUEST_DROP or lower in drop or lower.startswith("x-vault-") or name in injected:
            continue
        out.add(name, value)
    out.extend(injected)
    if accept_encoding is not None and "Accept-Encoding" in out:
        out["Accept-Encoding"] = accept_encoding
    if cookie:
        existing = out.get("Cookie")
        out["Cookie"] = f"{existing}; {cookie}" if existing else cookie
    return out


def caller_response_headers(upstream: CIMultiDictProxy[str], *, keep_encoding: bool) -> CIMultiDict[str]:
    """Upstream response headers the caller may see (``Set-Cookie`` never; the vault's own are added later).

    ``keep_encoding`` is False when the body was decoded to be scanned for secrets.
    """
    drop = _connection_tokens(upstream)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        lower = name.lower()
        if (
            lower in _RESPONSE_DROP
            or lower in drop
            or lower.startswith(("x-vault-", "access-control-"))
            or (not keep_encoding and lower == "content-encoding")
        ):
            continue
        out.add(name, value)
    return out
