"""IMAP COMPRESS is refused in every form a client may send it (red-team round 2 of #15 found the
literal and tab-separated forms passing through unrewritten)."""

from __future__ import annotations

import pytest

from vault_proxy.sessions.imap_filter import REFUSED_MECHANISM, ImapFilter


def through(*chunks: bytes) -> bytes:
    f = ImapFilter()
    return b"".join(f.feed(chunk).to_upstream for chunk in chunks)


@pytest.mark.parametrize(
    "command",
    [b"a COMPRESS DEFLATE\r\n", b"a compress deflate\r\n", b"a\tCOMPRESS\tDEFLATE\r\n", b"a COMPRESS\r\n",
     b"a  Compress DEFLATE\n"],
)  # fmt: skip
def test_compress_lines_are_rewritten(command):
    out = through(command)
    assert REFUSED_MECHANISM in out and b"DEFLATE" not in out.upper().replace(b"COMPRESS", b"")


def test_compress_with_a_literal_argument_is_rewritten_and_stays_framed():
    out = through(b"a COMPRESS {7}\r\n", b"DEFLATE\r\n", b"b NOOP\r\n")
    assert out.startswith(b"a COMPRESS " + REFUSED_MECHANISM + b" {7}\r\n")
    assert out.endswith(b"DEFLATE\r\nb NOOP\r\n")  # the literal passes as data; the next command is intact


def test_other_commands_pass_unchanged():
    data = b"a SELECT INBOX\r\nb SEARCH SUBJECT {8}\r\nCOMPRESS\r\nc NOOP\r\n"
    assert through(data) == data  # COMPRESS inside a literal is data, not a command
