"""The reply mask's fast path (a chunk with nothing to mask passes as it came, the frames only keep
count) gives exactly what the segment-by-segment path gives, for any Postgres stream and chunking."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from vault_proxy.sessions.masking import LineFrames, PostgresFrames, ReplyMask

SECRET = b"pg-Secret-4f9a"


class _NoFastPath(PostgresFrames):
    """The same frames without ``advance``: every chunk goes through ``split``."""

    def __getattribute__(self, name: str):
        if name == "advance":
            raise AttributeError(name)
        return super().__getattribute__(name)


def message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


payloads = st.one_of(st.binary(max_size=300), st.just(SECRET), st.builds(lambda a, b: a + SECRET + b,
                     st.binary(max_size=20), st.binary(max_size=20)))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(st.tuples(st.sampled_from([b"D", b"d", b"T", b"C"]), payloads), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=15),
)
def test_fast_path_output_equals_the_general_path(messages, cuts):
    stream = b"".join(message(kind, payload) for kind, payload in messages)
    bounds = sorted({min(c, len(stream)) for c in cuts} | {len(stream)})
    fast, slow = ReplyMask([SECRET], PostgresFrames()), ReplyMask([SECRET], _NoFastPath())
    out_fast, out_slow, start = [], [], 0
    for end in bounds:
        out_fast.append(fast.feed(stream[start:end]))
        out_slow.append(slow.feed(stream[start:end]))
        start = end
    out_fast.append(fast.flush())
    out_slow.append(slow.flush())
    assert b"".join(out_fast) == b"".join(out_slow)
    assert SECRET not in b"".join(out_fast)
    assert len(b"".join(out_fast)) == len(stream)  # masking keeps every length: framing stays valid


def test_line_frames_pass_clean_lines_as_they_came():
    mask = ReplyMask([SECRET], LineFrames())
    assert mask.feed(b"* OK ready\r\n") == b"* OK ready\r\n"
    assert mask.feed(b"* 1 FETCH " + SECRET + b"\r\n") == b"* 1 FETCH " + b"*" * len(SECRET) + b"\r\n"
