"""OpenSSH public key parsing and SHA256 fingerprints (the ``ssh-keygen -l -E sha256`` form)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct


def parse_public_key(text: str) -> tuple[str, bytes]:
    """Split ``"<type> <base64> [comment]"`` into the key type and its wire blob, checking both agree."""
    fields = text.split()
    if len(fields) < 2:
        raise ValueError("ssh_host_key must look like '<key-type> <base64> [comment]'")
    key_type, encoded = fields[0], fields[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("ssh_host_key has invalid base64") from exc
    if len(blob) < 4:
        raise ValueError("ssh_host_key blob is too short")
    (type_len,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + type_len].decode("ascii", "replace") != key_type:
        raise ValueError("ssh_host_key type does not match its blob")
    return key_type, blob


def fingerprint_sha256(text: str) -> str:
    _, blob = parse_public_key(text)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
