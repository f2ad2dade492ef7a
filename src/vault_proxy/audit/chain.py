"""The chained line format, shared by the writer (``log.py``) and the verifier (``verify.py``).

Every line ends with the same three fields, in this order::

    {…the event…,"seq":N[,"mac":false],"prev":"<64 hex>","hash":"<64 hex>"}

A line's *body* is its bytes up to (not including) ``,"hash":`` — the event and ``seq``/``mac``/``prev``.

* ``seq``  — 1, 2, 3 … across restarts and rotated files.
* ``prev`` — SHA-256 (hex) of the previous line's body (of the whole line if it has no hash field);
  64 zeros for the first line of a log. Anyone can check these links: no key needed.
* ``hash`` — HMAC-SHA256, under the audit key (HKDF-SHA256 of the vault's data key, ``info`` =
  ``KEY_INFO``), of the 32-byte SHA-256 of this line's body. Lines written while the vault is locked
  have no key: they carry ``"mac":false`` and ``hash`` is the SHA-256 of the body itself.

So the body is hashed once per line (the next ``prev`` and the HMAC's input are the same digest), and
exactly as written: a verifier never re-serialises JSON. Leaving ``hash`` out of the link loses
nothing: without the key it proves nothing, and with the key an edited ``hash`` fails its own check.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

GENESIS = "0" * 64
KEY_INFO = b"vault-proxy audit log HMAC v1"
RECORD_SECTION = "audit"  # the last-hash record's key in the vault plaintext
ANCHOR_ACTION = "audit.anchor"
HASH_FIELD = b',"hash":"'
TAIL_LEN = len(HASH_FIELD) + 64 + 2  # ,"hash":"<64 hex>"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def derive_key(data_key: bytes) -> bytes:
    """The audit MAC key: HKDF-SHA256 of the vault's data key (one-way: it reveals nothing of it)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(data_key)


class LineMac:
    """HMAC-SHA256 with the key's pad blocks hashed once: each message costs two state copies.

    Same result as ``hmac.new(key, data, "sha256")`` at less than half its cost.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = sha256(block.translate(_IPAD))
        self._outer = sha256(block.translate(_OPAD))

    def hexdigest(self, data: bytes) -> str:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def link_hash(line: bytes) -> str:
    """What the next line's ``prev`` holds: SHA-256 of ``line``'s body (all of it if it has no hash)."""
    if has_hash_field(line):
        line = line[:-TAIL_LEN]
    return sha256(line).hexdigest()


def has_hash_field(line: bytes) -> bool:
    """Whether ``line`` (no newline) ends with ``,"hash":"<64 hex>"}``."""
    return (
        len(line) > TAIL_LEN
        and line[-TAIL_LEN : -TAIL_LEN + len(HASH_FIELD)] == HASH_FIELD
        and line[-2:] == b'"}'
        and _HEX64.fullmatch(line[-66:-2].decode("latin-1")) is not None
    )


def is_hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


@dataclass(frozen=True)
class Chained:
    """A line that has the chain fields where the writer puts them (not yet checked)."""

    body: bytes  # what ``hash`` covers
    hash: str
    seq: int
    prev: str
    keyed: bool  # False: "mac":false, ``hash`` is a plain SHA-256
    fields: dict[str, Any]

    def hash_ok(self, mac: LineMac | None) -> bool | None:
        """Whether ``hash`` matches the body; None when it is an HMAC and there is no key."""
        if not self.keyed:
            return hmac.compare_digest(sha256(self.body).hexdigest(), self.hash)
        if mac is None:
            return None
        return hmac.compare_digest(mac.hexdigest(sha256(self.body).digest()), self.hash)


def parse(raw: bytes) -> Chained | None:
    """``raw`` (one line, no newline) as a chained line, or None when it is not one."""
    if not has_hash_field(raw):
        return None
    try:
        fields = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    seq, prev, digest = fields.get("seq"), fields.get("prev"), fields.get("hash")
    if type(seq) is not int or seq < 1 or not is_hex64(prev) or not is_hex64(digest):
        return None
    keyed = fields.get("mac", True) is not False
    body = raw[:-TAIL_LEN]
    # The chain fields must be exactly where the writer puts them, and the hash the last field.
    mac_field = "" if keyed else ',"mac":false'
    expected_end = f',"seq":{seq}{mac_field},"prev":"{prev}"'.encode()
    if not body.endswith(expected_end) or raw[-66:-2].decode() != digest:
        return None
    return Chained(body, digest, seq, prev, keyed, fields)
