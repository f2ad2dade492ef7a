"""The vault file format: round trip, wrong password, tampering, legacy (Go) files, re-wrapping."""

from __future__ import annotations

import pytest

from vault_proxy.vault import fileformat
from vault_proxy.vault.fileformat import DamagedVaultError, KdfParams, VaultFormatError, WrongPasswordError

# Tests use cheap KDF parameters where the parameters themselves are not under test.
FAST = KdfParams(iterations=1, memory_kib=64, lanes=1)
PLAINTEXT = b'{"services":{},"files":{}}'


def test_round_trip_keeps_plaintext_and_key_material():
    material = fileformat.new_key_material("correct horse", FAST)
    blob = material.encrypt(PLAINTEXT)
    plaintext, reopened = fileformat.decrypt(blob, "correct horse")
    assert plaintext == PLAINTEXT
    assert reopened == material


def test_each_save_uses_a_fresh_nonce():
    material = fileformat.new_key_material("correct horse", FAST)
    assert material.encrypt(PLAINTEXT) != material.encrypt(PLAINTEXT)


def test_default_parameters_are_recorded_in_the_header():
    material = fileformat.new_key_material("correct horse")
    assert material.header.startswith(b"VPXV\x01\x01")
    header = fileformat._PARAMS.unpack_from(material.header)
    assert header[3:6] == (3, 64 * 1024, 4)


def test_wrong_password_is_refused():
    blob = fileformat.new_key_material("correct horse", FAST).encrypt(PLAINTEXT)
    with pytest.raises(WrongPasswordError):
        fileformat.decrypt(blob, "wrong horse")


@pytest.mark.parametrize("offset", [4, 6, 20, 25, 40, 60, 90, -1, -20])
def test_any_flipped_byte_is_detected(offset):
    blob = bytearray(fileformat.new_key_material("correct horse", FAST).encrypt(PLAINTEXT))
    blob[offset] ^= 0x01
    with pytest.raises((WrongPasswordError, VaultFormatError)):
        fileformat.decrypt(bytes(blob), "correct horse")


def test_truncated_file_is_a_format_error():
    blob = fileformat.new_key_material("correct horse", FAST).encrypt(PLAINTEXT)
    with pytest.raises(VaultFormatError):
        fileformat.decrypt(blob[:30], "correct horse")
    with pytest.raises(DamagedVaultError, match="the password is right"):
        fileformat.decrypt(blob[:-5], "correct horse")


def test_absurd_kdf_parameters_are_refused_before_deriving():
    material = fileformat.new_key_material("correct horse", FAST)
    blob = bytearray(material.encrypt(PLAINTEXT))
    blob[10:14] = (2**31).to_bytes(4, "big")  # memory cost in KiB
    with pytest.raises(VaultFormatError, match="out-of-range"):
        fileformat.decrypt(bytes(blob), "correct horse")


def test_legacy_go_format_opens_without_key_material():
    blob = fileformat.encrypt_legacy(PLAINTEXT, "legacy password")
    assert not fileformat.is_current_format(blob)
    plaintext, material = fileformat.decrypt(blob, "legacy password")
    assert plaintext == PLAINTEXT
    assert material is None
    with pytest.raises(WrongPasswordError):
        fileformat.decrypt(blob, "not the password")


def test_rewrapping_keeps_the_data_key_and_drops_the_old_password():
    old = fileformat.new_key_material("first password", FAST)
    new = fileformat.new_key_material("second password", FAST, data_key=old.data_key)
    blob = new.encrypt(PLAINTEXT)
    assert fileformat.decrypt(blob, "second password")[1].data_key == old.data_key
    with pytest.raises(WrongPasswordError):
        fileformat.decrypt(blob, "first password")
