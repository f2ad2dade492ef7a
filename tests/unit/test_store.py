"""VaultStore on a real directory: create, reopen, crash-safe saves, legacy upgrade, .bak recovery."""

from __future__ import annotations

import json
import os
import stat

import pytest

from vault_proxy.vault import fileformat
from vault_proxy.vault.fileformat import WrongPasswordError
from vault_proxy.vault.store import PasswordTooShortError, StoredFile, VaultLockedError, VaultStore
from vault_proxy.vault.validation import parse_service

PASSWORD = "store-test-password"


def bearer(name: str, token: str = "tok-SECRET-1"):
    return parse_service(
        {"name": name, "base_url": "https://api.example.com", "auth": {"type": "bearer", "token": token}}
    )


async def put(store: VaultStore, name: str, token: str = "tok-SECRET-1"):
    return await store.put_service(name, lambda _prev: bearer(name, token))


async def test_first_unlock_creates_private_files(tmp_path):
    store = VaultStore(tmp_path / "data")
    assert await store.unlock(PASSWORD) is True
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


async def test_short_password_cannot_create(tmp_path):
    with pytest.raises(PasswordTooShortError):
        await VaultStore(tmp_path).unlock("short")
    assert not (tmp_path / "vault.enc").exists()


async def test_data_survives_reopen_and_is_encrypted(tmp_path):
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    await put(store, "svc-a", "tok-SECRET-persist")
    await store.put_file(StoredFile.from_bytes("key.pem", "text/plain", b"file-SECRET-bytes"))
    raw = store.path.read_bytes()
    assert b"tok-SECRET-persist" not in raw and b"svc-a" not in raw

    again = VaultStore(tmp_path)
    assert await again.unlock(PASSWORD) is False
    assert again.services["svc-a"].auth.token.get_secret_value() == "tok-SECRET-persist"
    assert again.files["key.pem"].data() == b"file-SECRET-bytes"


async def test_save_keeps_previous_version_as_bak(tmp_path):
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    await put(store, "one")
    await put(store, "two")
    backup = tmp_path / "vault.enc.bak"
    plaintext, _ = fileformat.decrypt(backup.read_bytes(), PASSWORD)
    assert set(json.loads(plaintext)["services"]) == {"one"}
    assert not (tmp_path / "vault.enc.tmp").exists()


async def test_bak_is_private_even_when_vault_enc_was_copied_in_open(tmp_path):
    """A vault.enc copied in with 0644 (a migration) must not leave a world-readable .bak behind."""
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    await put(store, "one")
    (tmp_path / "vault.enc").chmod(0o644)
    await put(store, "two")
    assert (tmp_path / "vault.enc.bak").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "vault.enc").stat().st_mode & 0o777 == 0o600


async def test_missing_vault_enc_is_restored_from_bak_not_recreated(tmp_path):
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    await put(store, "kept")
    await put(store, "newer")
    os.unlink(store.path)
    again = VaultStore(tmp_path)
    assert await again.unlock(PASSWORD) is False
    assert set(again.services) == {"kept"}
    assert store.path.exists()
    with pytest.raises(WrongPasswordError):
        await VaultStore(tmp_path).unlock("a different password")


async def test_locked_store_refuses_reads_and_writes(tmp_path):
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    store.lock()
    with pytest.raises(VaultLockedError):
        _ = store.services
    with pytest.raises(VaultLockedError):
        await put(store, "x")


async def test_failed_change_leaves_memory_and_disk_untouched(tmp_path):
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    await put(store, "a")
    before = store.path.read_bytes()

    def explode(_prev):
        raise ValueError("refused")

    with pytest.raises(ValueError):
        await store.put_service("b", explode)
    assert set(store.services) == {"a"}
    assert store.path.read_bytes() == before


async def test_legacy_file_is_upgraded_on_unlock(tmp_path):
    go_json = {
        "services": {
            "gh": {
                "name": "gh",
                "base_url": "https://api.github.com",
                "auth": {"type": "bearer", "token": "ghp-SECRET"},
            }
        },
        "files": {"n.txt": {"name": "n.txt", "mime_type": "text/plain", "data": "aGVsbG8="}},
    }
    (tmp_path / "vault.enc").write_bytes(fileformat.encrypt_legacy(json.dumps(go_json).encode(), PASSWORD))
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    assert store.services["gh"].auth.token.get_secret_value() == "ghp-SECRET"
    assert store.files["n.txt"].data() == b"hello"
    assert fileformat.is_current_format(store.path.read_bytes())


async def test_unparseable_service_is_kept_verbatim(tmp_path):
    doc = {"services": {"odd": {"name": "odd", "auth": {"type": "future_type", "x": 1}}}, "files": {}, "extra": [1]}
    (tmp_path / "vault.enc").write_bytes(fileformat.encrypt_legacy(json.dumps(doc).encode(), PASSWORD))
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    assert "odd" not in store.services
    await put(store, "new")
    plaintext, _ = fileformat.decrypt(store.path.read_bytes(), PASSWORD)
    saved = json.loads(plaintext)
    assert saved["services"]["odd"] == doc["services"]["odd"]
    assert saved["extra"] == [1]


async def test_change_password_rewraps(tmp_path):
    store = VaultStore(tmp_path)
    await store.unlock(PASSWORD)
    await put(store, "a")
    with pytest.raises(WrongPasswordError):
        await store.change_password("not-the-password", "new-password-1")
    await store.change_password(PASSWORD, "new-password-1")
    with pytest.raises(WrongPasswordError):
        await VaultStore(tmp_path).unlock(PASSWORD)
    again = VaultStore(tmp_path)
    await again.unlock("new-password-1")
    assert set(again.services) == {"a"}


def test_file_with_invalid_base64_is_a_corrupt_vault_naming_it():
    import json

    from vault_proxy.vault.store import CorruptVaultError, parse_plaintext

    good = {"files": {"key": {"name": "key", "mime_type": "text/plain", "data": "aGVsbG8="}}}
    assert parse_plaintext(json.dumps(good).encode()).files["key"].size == 5
    bad = {"files": {"key": {"name": "key", "mime_type": "text/plain", "data": "not base64!"}}}
    with pytest.raises(CorruptVaultError, match="file 'key' data is not valid base64"):
        parse_plaintext(json.dumps(bad).encode())
