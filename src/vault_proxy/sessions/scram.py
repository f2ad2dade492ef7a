"""The client half of SCRAM-SHA-256 (RFC 5802 / 7677) as PostgreSQL uses it, without channel binding.

PostgreSQL takes the user name from the startup message, so the client-first message carries an empty
``n=``. The server's final message is checked: a server that does not know the password cannot make it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

MECHANISM = "SCRAM-SHA-256"
_GS2_HEADER = "n,,"  # no channel binding, no authzid
MAX_ITERATIONS = 10_000_000
_ITERATIONS = re.compile(r"[0-9]{1,10}")
_ERROR_CODE = re.compile(r"[a-z-]{1,40}")  # RFC 5802 server-error values are tokens like invalid-proof


class ScramError(Exception):
    """The exchange broke off; the message never holds the password."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _attributes(message: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in message.split(",") if "=" in part)
    return {key: value for key, value in pairs}


class ScramClient:
    def __init__(self, password: str) -> None:
        self._password = password.encode()
        self._nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._first_bare = f"n=,r={self._nonce}"
        self._server_signature = b""

    def first_message(self) -> bytes:
        return (_GS2_HEADER + self._first_bare).encode()

    def final_message(self, server_first: bytes) -> bytes:
        """Answer the server-first message with the client proof (every malformed input: ``ScramError``)."""
        try:
            return self._final_message(server_first)
        except ScramError:
            raise
        except (ValueError, IndexError, UnicodeError, OverflowError, TypeError):
            raise ScramError("malformed server-first message") from None

    def _final_message(self, server_first: bytes) -> bytes:
        try:
            text = server_first.decode("ascii")
        except UnicodeDecodeError:
            raise ScramError("malformed server-first message") from None
        attrs = _attributes(text)
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("server nonce does not extend ours")
        if not _ITERATIONS.fullmatch(iterations) or not 0 < int(iterations) <= MAX_ITERATIONS:
            raise ScramError("bad iteration count")
        try:
            salt_bytes = base64.b64decode(salt, validate=True)
        except ValueError:
            raise ScramError("bad salt") from None
        if not salt_bytes:
            raise ScramError("bad salt")
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt_bytes, int(iterations))
        client_key = _hmac(salted, b"Client Key")
        channel = base64.b64encode(_GS2_HEADER.encode()).decode()
        without_proof = f"c={channel},r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server(self, server_final: bytes) -> None:
        """Raise unless the server proved it knows the password too.

        An ``e=`` error is named only by an allow-listed token: the text is the server's to choose."""
        attrs = _attributes(server_final.decode("utf-8", "replace"))
        if "e" in attrs:
            code = attrs["e"]
            raise ScramError(f"server error {code}" if _ERROR_CODE.fullmatch(code) else "server error")
        try:
            signature = base64.b64decode(attrs.get("v", ""), validate=True)
        except (ValueError, UnicodeError):
            signature = b""
        if not self._server_signature or not hmac.compare_digest(signature, self._server_signature):
            raise ScramError("server signature does not match")
