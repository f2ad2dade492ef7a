"""The header rules of the proxy, both directions, in one place (SPEC §3, §9)."""

from __future__ import annotations

import re
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
_RESPONSE_DROP_DECODED = _RESPONSE_DROP | {"content-encoding"}


def _connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Header names listed in ``Connection`` (they are hop-by-hop for this message too)."""
    if "Connection" not in headers:
        return frozenset()
    names: set[str] = set()
    for value in headers.getall("Connection", ()):
        names.update(part.strip().lower() for part in value.split(",") if part.strip())
    return frozenset(names)


# The request drop set for each header that may carry the vault token (computed once).
_REQUEST_DROP_FOR = {
    header: _REQUEST_DROP | {header.lower()} if header else _REQUEST_DROP
    for header in (None, "Authorization", "X-Vault-Token", "x-api-key")
}


# Headers that may carry a vault token on /proxy routes besides X-Vault-Token (always dropped). A value
# shaped like a vault token (64 lowercase hex) in either is never forwarded, even when the other one
# authenticated the call: a client configured with both would otherwise hand one to the upstream.
_TOKEN_CARRIERS = ("Authorization", "x-api-key")
_VAULT_TOKEN = re.compile(r"[0-9a-f]{64}")
_OTHER_CARRIERS = {"Authorization": ("x-api-key",), "x-api-key": ("Authorization",)}


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
    drop = _REQUEST_DROP_FOR.get(token_header) or _REQUEST_DROP | {str(token_header).lower()}
    drop = drop | _connection_tokens(incoming) if "Connection" in incoming else drop
    inject = tuple(inject)
    drop = drop | {name.lower() for name, _ in inject}  # the credential's headers replace the caller's
    out: CIMultiDict[str] = CIMultiDict(
        [
            (name, value)
            for name, value in incoming.items()
            if (low := name.lower()) not in drop and low[:8] != "x-vault-"
        ]
    )
    for name in _OTHER_CARRIERS.get(token_header, _TOKEN_CARRIERS):  # a second token in the other carrier
        value = out.get(name)
        if value is not None and _VAULT_TOKEN.fullmatch(value.removeprefix("Bearer ").strip()):
            del out[name]
    out.extend(inject)
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
    drop = _RESPONSE_DROP if keep_encoding else _RESPONSE_DROP_DECODED
    if "Connection" in upstream:
        drop = drop | _connection_tokens(upstream)
    return CIMultiDict(
        [
            (name, value)
            for name, value in upstream.items()
            if (low := name.lower()) not in drop and not low.startswith(("x-vault-", "access-control-"))
        ]
    )
