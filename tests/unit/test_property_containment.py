"""Property tests for issue #15's two classes, on the pure code every proxied call goes through.

1. Where a call goes: for any raw request target (absolute forms, ``..``, ``%2e``, ``//``, backslashes,
   unicode), either the call is refused (a 400: the server's origin-form check, ``proxied_tail`` or the
   destination rule) or the origin dialled is exactly the service's and the path stays under its base
   path with no dot segment left.
2. What comes back: for any response shape (reason phrase, header names and values, stacked codings,
   any chunk split), no form of any member of the secret set reaches the caller.
"""

from __future__ import annotations

import gzip
import zlib
from urllib.parse import quote, unquote

import brotli
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from vault_proxy.outbound.destination import Destination, DestinationRefused, Origin, resolve
from vault_proxy.proxy.decoding import BodyDecoder, body_codings
from vault_proxy.proxy.response_scrub import caller_reason, scrub_headers
from vault_proxy.proxy.target import proxied_tail
from vault_proxy.redaction import SecretSet

SETTINGS = settings(max_examples=300, deadline=None)
SERVICE = "svc"
BASES = [
    "https://api.example.com",
    "https://api.example.com/",
    "https://api.example.com/v1",
    "https://api.example.com:8443/v1/deep/",
    "http://10.0.0.5:8080/api?key=K",
    "https://[2001:db8::1]/x",
]

segment_parts = st.sampled_from(
    [".", "..", "%2e", "%2E", ".%2e", "%2e.", "%2e%2e", "..%2f", "%2f", "%5c", "\\", "a", "b", "", "@evil",
     "evil.test:443", "%00", "é", "%C3%A9", "..;", ";x", "x#y", "?q=1", "%3F", "%23", "~", "ａ"]
)  # fmt: skip
tails = st.lists(segment_parts, max_size=8).map(lambda parts: "/" + "/".join(parts))
prefixes = st.sampled_from(
    ["", "http://evil.test", "https://evil.test:1", "pany://x", "//evil.test", "evil.test:443", "*", "\\\\evil"]
)


def raw_target(prefix: str, tail: str) -> str:
    return f"{prefix}/proxy/{SERVICE}{tail}"


def route(raw: str, base: str) -> Destination:
    """What the server does with a raw target: the origin-form check, the service tail, the rule."""
    if raw[:1] != "/":
        raise DestinationRefused("not origin-form")  # server/middleware.py answers 400
    return resolve(base, proxied_tail(raw, SERVICE))


@SETTINGS
@given(base=st.sampled_from(BASES), prefix=prefixes, tail=tails)
def test_the_origin_dialled_is_always_the_services(base, prefix, tail):
    try:
        destination = route(raw_target(prefix, tail), base)
    except DestinationRefused:
        return  # a 400 for the caller, nothing dialled
    assert destination.origin == Origin.of(base)
    base_path = Destination(Origin.of(base), resolve(base, "").target).target.split("?")[0].rstrip("/")
    path = destination.target.split("?")[0]
    assert path == base_path or path.startswith(base_path + "/") or (not base_path and path.startswith("/"))
    segments = [unquote(s) for s in path[len(base_path) :].split("/")]
    assert "." not in segments and ".." not in segments
    assert destination.target.startswith("/")


@SETTINGS
@given(base=st.sampled_from(BASES), junk=st.text(max_size=40))
def test_any_text_after_the_service_either_refused_or_under_the_base(base, junk):
    try:
        destination = route(f"/proxy/{SERVICE}{junk}", base)
    except DestinationRefused:
        return
    assert destination.origin == Origin.of(base)
    assert "\\" not in destination.target


# --------------------------------------------------------------------------- what comes back

secret_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=30)


def forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, quote(secret, safe="").encode()]


def encode(body: bytes, codings: list[str]) -> bytes:
    for coding in codings:
        if coding == "gzip":
            body = gzip.compress(body)
        elif coding == "deflate":
            body = zlib.compress(body)
        elif coding == "br":
            body = brotli.compress(body)
    return body


def caller_body(wire: bytes, headers: CIMultiDict[str], secrets: SecretSet, splits: list[int]) -> bytes:
    """The body as the relay would emit it: decoded in order, scrubbed as a stream, in any chunking."""
    decoder = BodyDecoder(body_codings(headers))
    stream = secrets.scrubber.stream()
    out = []
    cuts = sorted({min(s, len(wire)) for s in splits}) + [len(wire)]
    start = 0
    for end in cuts:
        for piece in decoder.feed(wire[start:end]):
            out.append(stream.feed(piece))
        start = end
    for piece in decoder.flush():
        out.append(stream.feed(piece))
    out.append(stream.flush())
    return b"".join(out)


@SETTINGS
@given(
    secret=secret_text,
    filler=st.binary(max_size=200),
    content_codings=st.lists(st.sampled_from(["identity", "gzip", "deflate", "br"]), max_size=3),
    transfer_gzip=st.booleans(),
    duplicate_headers=st.booleans(),
    splits=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    header_values=st.lists(st.tuples(st.sampled_from(["X-A", "Link", "Location"]), st.booleans()), max_size=4),
)
def test_no_secret_reaches_the_caller_whatever_the_response_shape(
    secret, filler, content_codings, transfer_gzip, duplicate_headers, splits, header_values
):
    assume(secret.lower() not in ("transfer-encoding", "content-encoding"))
    secrets = SecretSet([secret])
    body = filler[:100] + secret.encode() + filler[100:] + quote(secret, safe="").encode()
    headers: CIMultiDict[str] = CIMultiDict()
    applied = [c for c in content_codings if c != "identity"]
    if duplicate_headers:
        headers.add("Content-Encoding", "identity")
        for coding in content_codings:
            headers.add("Content-Encoding", coding)
    elif content_codings:
        headers.add("Content-Encoding", ", ".join(content_codings))
    wire = encode(body, applied)
    if transfer_gzip:
        headers.add("Transfer-Encoding", "gzip, chunked")
        wire = gzip.compress(wire)
    headers.add(f"X-{secret}", "1")
    for name, with_secret in header_values:
        headers.add(name, f"v {secret} w" if with_secret else "plain")

    scrub_headers(headers, secrets.scrubber)
    reason = caller_reason(200, f"OK {secret}", secrets.scrubber)
    emitted = caller_body(wire, headers, secrets, splits)

    shown = ("\n".join(f"{k}: {v}" for k, v in headers.items()) + reason).encode()
    for form in forms(secret):
        assert form not in shown
        assert form not in emitted


@SETTINGS
@given(secret=secret_text, junk=st.text(max_size=30))
def test_mask_removes_every_form(secret, junk):
    secrets = SecretSet([secret])
    text = f"{junk}{secret}{junk}{quote(secret, safe='')}"
    masked = secrets.mask(text)
    assert secret not in masked and quote(secret, safe="") not in masked
