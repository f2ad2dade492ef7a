"""Which SQL a Postgres session refuses: statements that set a role password, and leaving read-only.

The text is split into tokens the way PostgreSQL's lexer (``scan.l``) does: ``--`` and nested ``/* */``
comments, ``'…'`` with ``''``, ``E'…'`` with backslash escapes, ``$tag$…$tag$``, ``"…"`` identifiers,
``$1`` parameters, words. Because ``standard_conforming_strings`` may be off (backslashes then escape in
every string), the text is checked both ways and refused if either finds something. A backslash right
after a non-ASCII byte can be the second byte of a character in a client-only encoding (SJIS, BIG5, GBK,
…) where the server sees no backslash at all: such text is refused when it mentions a password at all.

What stays possible is written in the docs: SQL built at run time (``DO``, functions, ``EXECUTE``) is
not seen here. A least-privilege role is the real boundary; this check stops the direct statements
(including psql's ``\\password``) and an agent that tries to switch read-only off.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_WORD_START = re.compile(r"[A-Za-z_\x80-\xff]")
_WORD = re.compile(r"[A-Za-z_\x80-\xff][A-Za-z_0-9$\x80-\xff]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*)?\$")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_.]*")
_PARAM = re.compile(r"\$[0-9]+")
_SPACE = " \t\n\r\f\v"
_AMBIGUOUS_BACKSLASH = re.compile(rb"[\x80-\xff]\\")
READ_ONLY_SETTINGS = frozenset({"default_transaction_read_only", "transaction_read_only"})

PASSWORD_REFUSAL = ("42501", "refused by vault-proxy: a statement that sets a role password cannot run in a "
                    "vault session")  # fmt: skip
READ_ONLY_REFUSAL = ("25006", "refused by vault-proxy: this session is read-only (postgres_read_only)")


class Token(NamedTuple):
    kind: str  # "word" (lower-cased), "string", "ident", "param", "number", "op"
    text: str


def _skip_comment(sql: str, pos: int) -> int:
    """From ``/*``: past the matching ``*/`` (comments nest), or the end."""
    depth, pos = 1, pos + 2
    while depth and pos < len(sql):
        if sql.startswith("/*", pos):
            depth, pos = depth + 1, pos + 2
        elif sql.startswith("*/", pos):
            depth, pos = depth - 1, pos + 2
        else:
            pos += 1
    return pos


def _string(sql: str, pos: int, backslash: bool) -> tuple[str, int]:
    """From the opening quote: the string's text and the position after it."""
    out, pos = [], pos + 1
    while pos < len(sql):
        char = sql[pos]
        if backslash and char == "\\" and pos + 1 < len(sql):
            out.append(sql[pos + 1])
            pos += 2
        elif char == "'":
            if sql.startswith("''", pos):
                out.append("'")
                pos += 2
            else:
                return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    return "".join(out), pos


def statements(sql: str, backslash_quotes: bool) -> list[list[Token]]:
    """Tokens per statement (split at ``;``); ``backslash_quotes``: standard_conforming_strings off."""
    result: list[list[Token]] = [[]]
    pos, size = 0, len(sql)
    while pos < size:
        char = sql[pos]
        if char in _SPACE:
            pos += 1
        elif sql.startswith("--", pos):
            end = min((i for i in (sql.find("\n", pos), sql.find("\r", pos)) if i >= 0), default=size)
            pos = end
        elif sql.startswith("/*", pos):
            pos = _skip_comment(sql, pos)
        elif char == "'":
            text, pos = _string(sql, pos, backslash_quotes)
            result[-1].append(Token("string", text))
        elif char in "eE" and sql.startswith("'", pos + 1):
            text, pos = _string(sql, pos + 1, True)
            result[-1].append(Token("string", text))
        elif char in "bBxXnN" and sql.startswith("'", pos + 1):
            text, pos = _string(sql, pos + 1, backslash_quotes)
            result[-1].append(Token("string", text))
        elif char in "uU" and sql.startswith("&'", pos + 1):
            text, pos = _string(sql, pos + 2, backslash_quotes)
            result[-1].append(Token("string", text))
        elif char == '"' or char in "uU" and sql.startswith('&"', pos + 1):
            start = pos + (2 if char != '"' else 0)
            end = start + 1
            while True:
                end = sql.find('"', end)
                if end < 0 or not sql.startswith('""', end):
                    break
                end += 2
            end = size if end < 0 else end + 1
            result[-1].append(Token("ident", sql[start + 1 : end - 1].replace('""', '"')))
            pos = end
        elif char == "$":
            tag = _DOLLAR_TAG.match(sql, pos)
            if tag:
                end = sql.find(tag.group(), tag.end())
                end = size if end < 0 else end
                result[-1].append(Token("string", sql[tag.end() : end]))
                pos = min(size, end + len(tag.group()))
            else:
                digits = _PARAM.match(sql, pos)
                pos = digits.end() if digits else pos + 1
                result[-1].append(Token("param" if digits else "op", "$"))
        elif _WORD_START.match(char):
            word = _WORD.match(sql, pos)
            assert word is not None
            result[-1].append(Token("word", word.group().lower()))
            pos = word.end()
        elif char.isdigit():
            number = _NUMBER.match(sql, pos)
            assert number is not None
            result[-1].append(Token("number", number.group()))
            pos = number.end()
        elif char == ";":
            result.append([])
            pos += 1
        else:
            result[-1].append(Token("op", char))
            pos += 1
    return [tokens for tokens in result if tokens]


def _sets_password(tokens: list[Token]) -> bool:
    words = [t.text for t in tokens[:3] if t.kind == "word"]
    if len(words) < 2 or words[0] not in ("alter", "create") or words[1] not in ("role", "user", "group"):
        return False
    if words[1] == "user" and words[2:3] == ["mapping"]:  # a foreign server's options, not a role
        return False
    return any(t.kind == "word" and t.text == "password" for t in tokens)


def _leaves_read_only(tokens: list[Token]) -> bool:
    words = [t.text for t in tokens if t.kind == "word"]
    if any(a == "read" and b == "write" for a, b in zip(words, words[1:], strict=False)):
        return True
    named = any(t.kind in ("word", "string", "ident") and t.text.lower() in READ_ONLY_SETTINGS for t in tokens)
    return named and (words[:1] in (["set"], ["alter"]) or "set_config" in words or "pg_settings" in words)


def refusal(query: bytes, read_only: bool) -> tuple[str, str] | None:
    """(SQLSTATE, message) when the query text must not run, else None."""
    text = query.decode("latin-1")  # byte for byte: structure is ASCII in every server encoding
    if _AMBIGUOUS_BACKSLASH.search(query) and "password" in text.lower():
        return PASSWORD_REFUSAL
    for backslash_quotes in (False, True):
        for tokens in statements(text, backslash_quotes):
            if _sets_password(tokens):
                return PASSWORD_REFUSAL
            if read_only and _leaves_read_only(tokens):
                return READ_ONLY_REFUSAL
    return None


def raising_statement(code: str, message: str) -> str:
    """A statement the server answers with exactly this error, in its place among pipelined ones."""
    return f"DO $vault_proxy$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = '{message}'; END$vault_proxy$"
