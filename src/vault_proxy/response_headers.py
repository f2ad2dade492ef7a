"""Headers the vault puts on every response it sends, its own and proxied ones alike."""

from __future__ import annotations

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
# The server middleware sets these on ordinary responses; a handler that streams (prepares) its
# response before returning adds them itself, as the proxy does (proxy/headers.py).
RESPONSE_HEADERS = {**SECURITY_HEADERS, "Server": "vault-proxy"}  # no version banner
