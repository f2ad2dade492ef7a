"""The on-disk vault format: a small authenticated header, then the AES-256-GCM encrypted JSON.

Layout (all integers big-endian)::

    magic "VPXV" | version u8 | kdf id u8 | t u32 | m_kib u32 | p u32 | salt_len u8 | salt
    | wrap_nonce[12] | wrapped_key[48] | data_nonce[12] | ciphertext+tag

The data key (random, 256 bit) is wrapped with AES-256-GCM under the Argon2id key of the master
password; the wrap's associated data is every header byte before the wrap nonce, so any edit of
the magic, version or KDF parameters makes the unwrap fail. The payload's associated data is the
header up to and including the wrapped key, which ties the ciphertext to its key.

The Go tool's legacy format (``salt[16] | nonce[12] | ciphertext+tag``, no header, the Argon2id
key used directly) is read too; saving always writes ours.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

MAGIC = b"VPXV"
VERSION = 1
KDF_ARGON2ID = 1
NONCE_LEN = 12
KEY_LEN = 32
SALT_LEN = 16
WRAPPED_LEN = KEY_LEN + 16
_PARAMS = struct.Struct(">4sBBIIIB")  # magic, version, kdf, t, m_kib, p, salt_len
LEGACY_MIN_LEN = SALT_LEN + NONCE_LEN + 16
_CHUNK = 1024 * 1024


class VaultFormatError(Exception):
    """The file is not a vault we can read (bad magic, truncated, unknown version)."""


class WrongPasswordError(Exception):
    """Authentication failed: wrong password, or the file was altered."""


class DamagedVaultError(VaultFormatError):
    """The password unwrapped the data key, but the payload fails its GCM check (damaged content).

    Only our format can tell this apart: the legacy format has no wrapped key, so there any
    failure is a ``WrongPasswordError``.
    """

    detail = "the password is right but the content fails its integrity check"

    def __init__(self) -> None:
        super().__init__(f"vault file is damaged: {self.detail}")


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters; the defaults are the product's (t=3, 64 MiB, p=4)."""

    iterations: int = 3
    memory_kib: int = 64 * 1024
    lanes: int = 4

    def derive(self, password: str, salt: bytes) -> bytes:
        kdf = Argon2id(
            salt=salt,
            length=KEY_LEN,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_kib,
        )
        return kdf.derive(password.encode("utf-8"))


DEFAULT_KDF = KdfParams()
# Upper bounds when reading a header, so a crafted file cannot make unlock eat the machine.
_MAX_ITERATIONS = 64
_MAX_MEMORY_KIB = 1024 * 1024  # 1 GiB: 16x our default; a crafted header must not OOM a small host
_MAX_LANES = 64


@dataclass(frozen=True)
class KeyMaterial:
    """What an unlocked vault keeps in memory to save without re-running Argon2."""

    data_key: bytes
    header: bytes  # our header up to and including the wrapped key

    def encrypt(self, plaintext: bytes) -> bytes:
        return b"".join(self.encrypt_stream([plaintext]))

    def encrypt_stream(self, parts: Iterable[bytes]) -> Iterator[bytes]:
        """The file as a sequence of chunks: header, nonce, ciphertext pieces, tag.

        Streaming GCM gives the same bytes as one-shot AES-GCM, without ever holding the whole
        plaintext or ciphertext of a vault with megabytes of files in one buffer.
        """
        nonce = os.urandom(NONCE_LEN)
        encryptor = Cipher(algorithms.AES(self.data_key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(self.header)
        yield self.header + nonce
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), _CHUNK):
                yield encryptor.update(view[start : start + _CHUNK])
        yield encryptor.finalize() + encryptor.tag


def new_key_material(password: str, kdf: KdfParams = DEFAULT_KDF, data_key: bytes | None = None) -> KeyMaterial:
    """Wrap a (new or given) data key under ``password``. Runs Argon2id: call it off the event loop."""
    data_key = data_key or AESGCM.generate_key(bit_length=256)
    salt = os.urandom(SALT_LEN)
    prefix = _PARAMS.pack(MAGIC, VERSION, KDF_ARGON2ID, kdf.iterations, kdf.memory_kib, kdf.lanes, SALT_LEN)
    prefix += salt
    wrap_nonce = os.urandom(NONCE_LEN)
    wrapped = AESGCM(kdf.derive(password, salt)).encrypt(wrap_nonce, data_key, prefix)
    return KeyMaterial(data_key=data_key, header=prefix + wrap_nonce + wrapped)


def is_current_format(blob: bytes) -> bool:
    return blob[:4] == MAGIC


def decrypt(blob: bytes, password: str) -> tuple[bytes, KeyMaterial | None]:
    """Open a vault file. Returns the plaintext and, for our format, the key material to reuse.

    For the legacy format the key material is None: the caller must create new material (which
    upgrades the file on its next save).
    """
    if is_current_format(blob):
        return _decrypt_current(blob, password)
    return _decrypt_legacy(blob, password), None


@dataclass(frozen=True)
class _Layout:
    """Where the parts of a current-format file are (all checked against the file's length)."""

    kdf: KdfParams
    prefix_end: int  # magic .. salt: the wrap's associated data
    header_end: int  # .. wrapped key: the payload's associated data

    def salt(self, blob: bytes) -> bytes:
        return blob[_PARAMS.size : self.prefix_end]

    def unwrap(self, blob: bytes, password: str) -> bytes:
        """The data key (``WrongPasswordError`` when the password, or the header, is wrong)."""
        key = self.kdf.derive(password, self.salt(blob))
        nonce_end = self.prefix_end + NONCE_LEN
        nonce, wrapped = blob[self.prefix_end : nonce_end], blob[nonce_end : self.header_end]
        try:
            return AESGCM(key).decrypt(nonce, wrapped, blob[: self.prefix_end])
        except InvalidTag as exc:
            raise WrongPasswordError from exc

    def open_payload(self, blob: bytes, data_key: bytes) -> bytes:
        """The plaintext (``InvalidTag`` when the key does not fit or the file was altered)."""
        nonce = blob[self.header_end : self.header_end + NONCE_LEN]
        return AESGCM(data_key).decrypt(nonce, blob[self.header_end + NONCE_LEN :], blob[: self.header_end])


def _layout(blob: bytes) -> _Layout:
    if not is_current_format(blob):
        raise VaultFormatError("not a vault file in the current format")
    if len(blob) < _PARAMS.size:
        raise VaultFormatError("vault file is truncated")
    _magic, version, kdf_id, t, m_kib, p, salt_len = _PARAMS.unpack_from(blob)
    if version != VERSION:
        raise VaultFormatError(f"unsupported vault format version {version}")
    if kdf_id != KDF_ARGON2ID:
        raise VaultFormatError(f"unsupported key derivation id {kdf_id}")
    if not (1 <= t <= _MAX_ITERATIONS and 8 * p <= m_kib <= _MAX_MEMORY_KIB and 1 <= p <= _MAX_LANES):
        raise VaultFormatError("vault header has out-of-range key derivation parameters")
    if not 8 <= salt_len <= 64:
        raise VaultFormatError("vault header has an invalid salt length")
    salt_end = _PARAMS.size + salt_len
    header_end = salt_end + NONCE_LEN + WRAPPED_LEN
    if len(blob) < header_end + NONCE_LEN + 16:
        raise VaultFormatError("vault file is truncated")
    return _Layout(KdfParams(t, m_kib, p), salt_end, header_end)


def _decrypt_current(blob: bytes, password: str) -> tuple[bytes, KeyMaterial]:
    layout = _layout(blob)
    data_key = layout.unwrap(blob, password)
    try:
        plaintext = layout.open_payload(blob, data_key)
    except InvalidTag as exc:
        raise DamagedVaultError from exc  # the key unwrapped: the password is right
    return plaintext, KeyMaterial(data_key=data_key, header=blob[: layout.header_end])


def decrypt_with_data_key(blob: bytes, data_key: bytes) -> bytes:
    """Open a current-format file with an already known data key (no password, no Argon2).

    ``vault-cli passwd`` keeps the data key and changes only its wrap, so the key from an older
    copy still opens a file re-wrapped since; that tells "re-wrapped" from "damaged". Raises
    ``VaultFormatError`` for a legacy or truncated file, ``WrongPasswordError`` when the key does
    not open it (another key, or altered bytes).
    """
    try:
        return _layout(blob).open_payload(blob, data_key)
    except InvalidTag as exc:
        raise WrongPasswordError from exc


def _decrypt_legacy(blob: bytes, password: str) -> bytes:
    if len(blob) < LEGACY_MIN_LEN:
        raise VaultFormatError("vault file is truncated or not a vault")
    salt, nonce, ciphertext = blob[:SALT_LEN], blob[SALT_LEN : SALT_LEN + NONCE_LEN], blob[SALT_LEN + NONCE_LEN :]
    key = DEFAULT_KDF.derive(password, salt)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, None)
    except InvalidTag as exc:
        raise WrongPasswordError from exc


def encrypt_legacy(plaintext: bytes, password: str) -> bytes:
    """Write the Go tool's format. Only tests and migration tooling need this."""
    salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    key = DEFAULT_KDF.derive(password, salt)
    return salt + nonce + AESGCM(key).encrypt(nonce, plaintext, None)
