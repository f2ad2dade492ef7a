"""Secret echo scrubbing: variants, one-shot and streaming scrub, Content-Encoding decoding."""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from urllib.parse import quote, quote_plus

import brotli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_proxy.proxy.decoding import SCANNABLE_ACCEPT_ENCODING, BodyDecoder, UnsupportedEncoding
from vault_proxy.redaction.scrubber import REDACTED, Scrubber, secret_variants

SECRET = "sk-live-0123456789abcdef"
SECRET_B = SECRET.encode()


def scrubber(*secrets: str, pairs: tuple[tuple[str, str], ...] = ()) -> Scrubber:
    return Scrubber(secret_variants(secrets, pairs))


def stream_all(sc: Scrubber, chunks: list[bytes]) -> tuple[bytes, int]:
    stream = sc.stream()
    out = b"".join(stream.feed(c) for c in chunks) + stream.flush()
    return out, stream.hits


def reference(data: bytes, variants: list[bytes]) -> bytes:
    """Naive leftmost-longest replacement, independent of the implementation."""
    out, i = bytearray(), 0
    while i < len(data):
        hit = next((v for v in sorted(variants, key=len, reverse=True) if data.startswith(v, i)), None)
        if hit is None:
            out.append(data[i])
            i += 1
        else:
            out += REDACTED
            i += len(hit)
    return bytes(out)


# --- variants -----------------------------------------------------------------------------------


def test_variants_cover_raw_url_json_and_basic_forms():
    secret = 'p@ss/w rd+"é\\'
    variants = secret_variants([secret], [("admin", secret)])
    expected = {
        secret.encode(),
        quote(secret, safe="").encode(),
        quote_plus(secret).encode(),
        json.dumps(secret)[1:-1].encode(),
        json.dumps(secret, ensure_ascii=False)[1:-1].encode(),
        base64.b64encode(f"admin:{secret}".encode()),
        base64.urlsafe_b64encode(f"admin:{secret}".encode()),
    }
    assert expected <= set(variants)
    assert len(variants) == len(set(variants))
    assert [len(v) for v in variants] == sorted((len(v) for v in variants), reverse=True)


def test_unpadded_basic_form_and_no_duplicates_for_plain_secrets():
    variants = secret_variants([SECRET], [("u", "pass1")])
    padded = base64.b64encode(b"u:pass1")
    assert padded.endswith(b"=") and padded.rstrip(b"=") in variants
    assert variants.count(SECRET_B) == 1


def test_short_secrets_are_ignored():
    assert secret_variants(["abc", "", "xy"]) == []
    assert not Scrubber(secret_variants(["abc"])).enabled
    assert secret_variants(["abcd"]) == [b"abcd"]


def test_disabled_scrubber_passes_everything_untouched():
    sc = Scrubber([])
    data = os.urandom(1000)
    assert not sc.enabled
    assert sc.scrub(data) == (data, 0)
    assert sc.scrub_text("x") == ("x", 0)
    stream = sc.stream()
    assert stream.feed(data) is data
    assert stream.flush() == b""
    assert Scrubber([b""]).enabled is False


def test_repr_hides_variants():
    assert SECRET not in repr(scrubber(SECRET))


# --- one-shot -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote("tok/with+odd=chars&x", safe=""),
        json.dumps('quote"d\\secret')[1:-1],
    ],
)
def test_scrub_finds_each_form(form):
    sc = scrubber(SECRET, "tok/with+odd=chars&x", 'quote"d\\secret')
    clean, hits = sc.scrub(f'{{"echo": "{form}"}}'.encode())
    assert (clean, hits) == (b'{"echo": "[REDACTED]"}', 1)


def test_scrub_basic_auth_base64_forms():
    sc = scrubber(pairs=(("admin", "s3cr>>>t??"),))
    token = base64.b64encode(b"admin:s3cr>>>t??")
    urlsafe = base64.urlsafe_b64encode(b"admin:s3cr>>>t??")
    assert token != urlsafe and token.endswith(b"==")
    clean, hits = sc.scrub(b"Authorization: Basic " + token + b" / " + urlsafe)
    assert clean == b"Authorization: Basic [REDACTED] / [REDACTED]" and hits == 2
    assert sc.scrub(b"pw=s3cr>>>t??")[0] == b"pw=[REDACTED]"  # the password alone too
    assert sc.scrub(b"b64=" + token.rstrip(b"=") + b"%3D%3D")[0] == b"b64=[REDACTED]%3D%3D"


def test_scrub_adjacent_and_overlapping_secrets():
    sc = scrubber("abcdef", "defghi", "xyzw")
    assert sc.scrub(b"abcdefdefghixyzwxyzw") == (REDACTED * 4, 4)
    # Overlap: the leftmost wins, the rest of the other secret alone is not a secret.
    assert sc.scrub(b"abcdefghi") == (REDACTED + b"ghi", 1)
    # A secret that contains another: the longer one is replaced whole.
    sc = scrubber("token1234", "1234x")
    assert sc.scrub(b"_token1234x_") == (b"_" + REDACTED + b"x_", 1)
    assert sc.scrub(b"_1234x_") == (b"_" + REDACTED + b"_", 1)


def test_scrub_text_round_trips_non_utf8_header_values():
    sc = scrubber(SECRET)
    raw = b"\xff\xfe Bearer " + SECRET_B
    text = raw.decode("utf-8", "surrogateescape")
    clean, hits = sc.scrub_text(text)
    assert hits == 1 and clean.encode("utf-8", "surrogateescape") == b"\xff\xfe Bearer [REDACTED]"
    untouched = "caf\u00e9 \udcff"
    assert sc.scrub_text(untouched) == (untouched, 0)


def test_scrub_unicode_secret_in_header():
    sc = scrubber("pässwörd-1")
    assert sc.scrub_text("x pässwörd-1 y") == ("x [REDACTED] y", 1)


# --- streaming ----------------------------------------------------------------------------------


def test_secret_split_at_every_boundary():
    sc = scrubber(SECRET)
    body = b"prefix " + SECRET_B + b" suffix"
    expected = b"prefix [REDACTED] suffix"
    for cut in range(len(body) + 1):
        assert stream_all(sc, [body[:cut], body[cut:]]) == (expected, 1), cut


def test_secret_split_at_every_pair_of_boundaries():
    sc = scrubber(SECRET, "other-secret-42")
    body = b"a" + SECRET_B + b"other-secret-42" + b"z"
    expected = b"a" + REDACTED * 2 + b"z"
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            assert stream_all(sc, [body[:i], body[i:j], body[j:]]) == (expected, 2), (i, j)


def test_long_secret_split_anywhere():
    pem = "-----BEGIN PRIVATE KEY-----\n" + "".join(f"{i:04x}" for i in range(500)) + "\n-----END PRIVATE KEY-----\n"
    sc = scrubber(pem)
    json_form = json.dumps(pem)[1:-1].encode()
    body = b'{"key": "' + json_form + b'", "raw": "' + pem.encode() + b'"}'
    expected = b'{"key": "[REDACTED]", "raw": "[REDACTED]"}'
    for cut in range(0, len(body) + 1, 7):
        assert stream_all(sc, [body[:cut], body[cut:]]) == (expected, 2), cut
    assert stream_all(sc, [body[i : i + 1] for i in range(len(body))]) == (expected, 2)
    stream = sc.stream()
    assert stream.feed(b"x" + pem.encode()[:1500]) == b"x"  # a long partial secret is held back whole
    assert stream.feed(b"!") == pem.encode()[:1500] + b"!"


def test_variants_with_regex_special_first_bytes():
    sc = Scrubber([b"]^-\\x00", b"\x00\x00\xffz", b"[abc]"])
    for body in (b"..]^-\\x00..", b"\x00\x00\x00\xffz", b"a[abc]"):
        one_shot = sc.scrub(body)
        assert one_shot[1] == 1
        for cut in range(len(body) + 1):
            assert stream_all(sc, [body[:cut], body[cut:]]) == one_shot


def test_one_byte_chunks():
    sc = scrubber(SECRET, "abcdef", "defghi")
    body = b"xx" + SECRET_B + b"abcdefdefghi" + SECRET_B[:-1] + b"!" + SECRET_B
    out, hits = stream_all(sc, [body[i : i + 1] for i in range(len(body))])
    assert out == sc.scrub(body)[0] == b"xx" + REDACTED * 3 + SECRET_B[:-1] + b"!" + REDACTED
    assert hits == 4


def test_longer_variant_wins_across_chunks():
    # "abcd" alone is a secret, and so is "abcdefgh": a chunk ending in "abcd" must wait.
    sc = Scrubber([b"abcd", b"abcdefgh"])
    stream = sc.stream()
    assert stream.feed(b"x abcd") == b"x "
    assert stream.feed(b"efgh y") == REDACTED + b" y"
    assert stream.flush() == b"" and stream.hits == 1


def test_sse_event_is_not_held_back():
    sc = scrubber(SECRET, "data-token-9")  # even a secret that starts like the SSE field name
    stream = sc.stream()
    assert stream.feed(b"data: x\n\n") == b"data: x\n\n"
    assert stream.feed(b'data: {"delta": "hi"}\n\n') == b'data: {"delta": "hi"}\n\n'
    # Only a tail that could start a secret is held, and only until it cannot be one any more.
    assert stream.feed(b"data: sk-li") == b"data: "
    assert stream.feed(b"ke\n\n") == b"sk-like\n\n"
    assert stream.flush() == b""


def test_only_the_possible_prefix_is_held_back():
    stream = scrubber(SECRET).stream()
    assert stream.feed(b"hello s") == b"hello "
    assert stream.feed(b"k") == b""
    assert stream.feed(b"-x") == b"sk-x"
    assert stream.feed(b"sk-live-0123") == b""
    assert stream.flush() == b"sk-live-0123"


def test_flush_scrubs_and_counts_the_tail():
    sc = Scrubber([b"abcd", b"abcdefgh"])
    stream = sc.stream()
    assert stream.feed(b"..abcd") == b".."
    assert stream.flush() == REDACTED
    assert stream.hits == 1


def test_large_body_in_uneven_chunks():
    sc = scrubber(SECRET, "ghp_" + "A" * 36)
    blob = bytearray(os.urandom(300_000))
    for pos in (0, 5000, 65536 - 7, 65536 + 30, 200_000):
        blob[pos : pos + len(SECRET_B)] = SECRET_B
    data = bytes(blob)
    sizes = [1, 7, 4096, 16384, 65536, 3]
    chunks, i, k = [], 0, 0
    while i < len(data):
        chunks.append(data[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    out, hits = stream_all(sc, chunks)
    assert (out, hits) == sc.scrub(data)
    assert SECRET_B not in out and hits >= 5


_SECRETS = ["sk-live-0123456789abcdef", "abcdabcdx", "p@ss/w+rd=1", "ab12"]
_VARIANTS = secret_variants(_SECRETS, [("user", "p@ss/w+rd=1")])


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from(_VARIANTS), st.sampled_from([v[:3] for v in _VARIANTS])),
        max_size=25,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_property_streaming_equals_one_shot_and_leaks_nothing(pieces, cuts):
    sc = Scrubber(_VARIANTS)
    data = b"".join(pieces)
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    one_shot, hits = sc.scrub(data)
    assert one_shot == reference(data, _VARIANTS)
    assert stream_all(sc, chunks) == (one_shot, hits)
    # No variant contains a byte of "[REDACTED]", so none can survive or be formed by the replacement.
    assert not any(v in one_shot for v in _VARIANTS)


# --- Content-Encoding ---------------------------------------------------------------------------


def decode_all(encoding: str, body: bytes, size: int = 7) -> bytes:
    decoder = BodyDecoder(encoding)
    out = [piece for i in range(0, len(body), size) for piece in decoder.feed(body[i : i + size])]
    return b"".join([*out, *decoder.flush()])


def raw_deflate(data: bytes) -> bytes:
    obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()


PLAIN = b'{"echo": "Bearer ' + SECRET_B + b'", "pad": "' + b"lorem ipsum " * 500 + b'"}'


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("br", brotli.compress),
        ("identity", lambda b: b),
        ("GZip ", gzip.compress),
    ],
)
def test_decode_then_scrub(encoding, encode):
    body = encode(PLAIN)
    for size in (1, 7, 1000, len(body)):
        assert decode_all(encoding, body, size) == PLAIN
    sc = scrubber(SECRET)
    decoder, stream = BodyDecoder(encoding), sc.stream()
    out = b"".join(stream.feed(p) for i in range(0, len(body), 5) for p in decoder.feed(body[i : i + 5]))
    out += b"".join(stream.feed(p) for p in decoder.flush()) + stream.flush()
    assert SECRET_B not in out and b"Bearer [REDACTED]" in out and stream.hits == 1


def test_chained_encodings_are_undone_in_reverse_order():
    body = brotli.compress(gzip.compress(PLAIN))  # gzip applied first, then br
    assert decode_all("gzip, br", body) == PLAIN
    assert decode_all("deflate,identity, gzip", gzip.compress(zlib.compress(PLAIN))) == PLAIN


def test_multi_member_gzip():
    body = gzip.compress(b"first " + SECRET_B[:5]) + gzip.compress(SECRET_B[5:] + b" last")
    assert decode_all("gzip", body, 3) == b"first " + SECRET_B + b" last"


def test_empty_body_and_no_encoding():
    assert decode_all("gzip", b"") == b""
    assert decode_all("", PLAIN) == PLAIN


def test_decompression_output_is_bounded():
    bomb = gzip.compress(bytes(20 * 1024 * 1024))
    decoder = BodyDecoder("gzip")
    sizes = [len(p) for p in decoder.feed(bomb)] + [len(p) for p in decoder.flush()]
    assert sum(sizes) == 20 * 1024 * 1024 and max(sizes) <= 1024 * 1024
    br = BodyDecoder("br")
    sizes = [len(p) for p in br.feed(brotli.compress(bytes(20 * 1024 * 1024)))]
    assert sum(sizes) == 20 * 1024 * 1024 and max(sizes) <= 1024 * 1024


def test_corrupt_body_raises():
    with pytest.raises(zlib.error):
        decode_all("gzip", b"not gzip at all")


@pytest.mark.parametrize("encoding", ["zstd", "gzip, zstd", "compress", "br;q=1"])
def test_unsupported_encoding(encoding):
    assert not BodyDecoder.supports(encoding)
    with pytest.raises(UnsupportedEncoding) as caught:
        BodyDecoder(encoding)
    assert isinstance(caught.value, ValueError)


def test_supported_encodings_match_accept_encoding():
    assert BodyDecoder.supports(SCANNABLE_ACCEPT_ENCODING)
    for name in ("gzip", "x-gzip", "deflate", "br", "identity", "", "gzip, br"):
        assert BodyDecoder.supports(name)


def test_compressed_sse_events_come_out_one_by_one():
    events = [b'data: {"n": %d, "text": "hello"}\n\n' % i for i in range(5)]
    gz = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    br = brotli.Compressor()
    for encoding, chunks in (
        ("gzip", [gz.compress(e) + gz.flush(zlib.Z_SYNC_FLUSH) for e in events]),
        ("br", [br.process(e) + br.flush() for e in events]),
    ):
        decoder, stream = BodyDecoder(encoding), scrubber(SECRET).stream()
        for event, chunk in zip(events, chunks, strict=True):
            assert b"".join(stream.feed(p) for p in decoder.feed(chunk)) == event, encoding
