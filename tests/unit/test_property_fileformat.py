"""Property tests: the vault file parser rejects any damaged or foreign input with its own clear errors.

``decrypt`` may only return the plaintext of an intact file opened with its password; anything else —
random bytes, a truncated or bit-flipped file, a header with crafted parameters — is a ``VaultFormatError``
or a ``WrongPasswordError`` (which unlock turns into one 401), never another exception. Where the KDF is
not under test it is replaced by a cheap stand-in that also checks it is never run with parameters outside
the header's bounds (a crafted header must not make unlock eat the machine).
"""

from __future__ import annotations

import hashlib
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vault_proxy.vault import fileformat
from vault_proxy.vault.fileformat import KdfParams, VaultFormatError, WrongPasswordError
from vault_proxy.vault.store import CorruptVaultError, parse_plaintext

FAST = KdfParams(iterations=1, memory_kib=64, lanes=1)
CLEAN_ERRORS = (VaultFormatError, WrongPasswordError)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
passwords = st.text(min_size=1, max_size=24)


def _cheap_derive(self: KdfParams, password: str, salt: bytes) -> bytes:
    assert 1 <= self.iterations <= fileformat._MAX_ITERATIONS, self
    assert 8 * self.lanes <= self.memory_kib <= fileformat._MAX_MEMORY_KIB, self
    assert 1 <= self.lanes <= fileformat._MAX_LANES, self
    material = f"{self.iterations}/{self.memory_kib}/{self.lanes}/{password}".encode() + salt
    return hashlib.sha256(material).digest()


@contextmanager
def cheap_kdf():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KdfParams, "derive", _cheap_derive)
        yield


def _opens_or_fails_cleanly(blob: bytes, password: str) -> bytes | None:
    try:
        plaintext, _material = fileformat.decrypt(blob, password)
    except CLEAN_ERRORS as exc:
        assert isinstance(exc, WrongPasswordError) or str(exc)
        return None
    return plaintext


@st.composite
def crafted_headers(draw) -> bytes:
    """Our magic, then any version/KDF/parameters/salt length, then any tail (often long enough to parse)."""
    version = draw(st.sampled_from([fileformat.VERSION]) | st.integers(0, 255))
    kdf = draw(st.sampled_from([fileformat.KDF_ARGON2ID]) | st.integers(0, 255))
    t = draw(st.integers(0, 70) | st.integers(0, 2**32 - 1))
    m = draw(st.integers(0, 1024) | st.integers(0, 2**32 - 1))
    p = draw(st.integers(0, 70) | st.integers(0, 2**32 - 1))
    salt_len = draw(st.integers(0, 255))
    prefix = struct.pack(">4sBBIIIB", fileformat.MAGIC, version, kdf, t, m, p, salt_len)
    return prefix + draw(st.binary(max_size=200))


@SETTINGS
@given(st.binary(max_size=300) | crafted_headers(), passwords)
def test_foreign_bytes_are_refused_with_the_modules_errors(blob: bytes, password: str) -> None:
    with cheap_kdf():
        assert _opens_or_fails_cleanly(blob, password) is None


@pytest.fixture(scope="module")
def sample() -> tuple[bytes, bytes]:
    plaintext = b'{"services":{},"files":{"a":{"name":"a","mime_type":"text/plain","data":"aGk="}}}'
    with cheap_kdf():
        return fileformat.new_key_material("correct horse", FAST).encrypt(plaintext), plaintext


@SETTINGS
@given(st.data())
def test_every_truncation_is_refused(sample: tuple[bytes, bytes], data: st.DataObject) -> None:
    blob, _plaintext = sample
    cut = data.draw(st.integers(0, len(blob) - 1))
    with cheap_kdf():
        assert _opens_or_fails_cleanly(blob[:cut], "correct horse") is None


@SETTINGS
@given(st.data())
def test_every_bit_flip_is_refused(sample: tuple[bytes, bytes], data: st.DataObject) -> None:
    blob, _plaintext = sample
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 7)), min_size=1, max_size=3))
    damaged = bytearray(blob)
    for index, bit in flips:
        damaged[index] ^= 1 << bit
    assume(bytes(damaged) != blob)
    with cheap_kdf():
        assert _opens_or_fails_cleanly(bytes(damaged), "correct horse") is None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000), passwords, passwords)
def test_round_trip_with_the_real_kdf(plaintext: bytes, password: str, other: str) -> None:
    material = fileformat.new_key_material(password, FAST)
    blob = material.encrypt(plaintext)
    assert fileformat.decrypt(blob, password) == (plaintext, material)
    assert b"".join(material.encrypt_stream([plaintext[:7], plaintext[7:]]))[: len(material.header)] == material.header
    if other != password:
        with pytest.raises(WrongPasswordError):
            fileformat.decrypt(blob, other)


@SETTINGS
@given(st.binary(max_size=500), passwords)
def test_legacy_round_trip_and_damage(plaintext: bytes, password: str) -> None:
    with cheap_kdf(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(fileformat, "DEFAULT_KDF", FAST)
        blob = fileformat.encrypt_legacy(plaintext, password)
        assume(not fileformat.is_current_format(blob))  # a legacy salt may start with our magic: 1 in 2^32
        assert fileformat.decrypt(blob, password) == (plaintext, None)
        assert _opens_or_fails_cleanly(blob[:-1], password) is None
        assert _opens_or_fails_cleanly(blob[:20], password) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
plaintexts = st.fixed_dictionaries(
    {}, optional={"services": json_values | st.dictionaries(st.text(max_size=6), json_values, max_size=3),
                  "files": json_values | st.dictionaries(st.text(max_size=6), json_values, max_size=3)},
)  # fmt: skip


@SETTINGS
@given(plaintexts | json_values)
def test_decrypted_content_of_any_shape_loads_or_is_a_corrupt_vault(document) -> None:
    """What an authentic file decrypts to (ours, or the Go tool's) is loaded or refused as corrupt, never a crash."""
    import json

    try:
        state = parse_plaintext(json.dumps(document).encode())
    except CorruptVaultError as exc:
        assert str(exc)
        return
    assert isinstance(state.services, dict) and isinstance(state.files, dict)
