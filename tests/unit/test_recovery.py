"""Offline recovery (vault/recovery.py, ``vault-cli recover``) on files written by the real file format:
truncated, bit-flipped payload or header, re-wrapped under a newer password, legacy, no backup, both bad."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from vault_proxy.cli.main import cli
from vault_proxy.vault import fileformat
from vault_proxy.vault.fileformat import DamagedVaultError, KdfParams, KeyMaterial, WrongPasswordError
from vault_proxy.vault.recovery import RecoveryError, Status, Verdict, diagnose, restore_from_backup

FAST = KdfParams(iterations=1, memory_kib=64, lanes=1)
PASSWORD = "recovery-test-password"
NEW_PASSWORD = "recovery-newer-password"


def service(name: str) -> dict:
    return {"name": name, "base_url": "https://api.example.com", "auth": {"type": "bearer", "token": "tok-SECRET-1"}}


def plaintext(services: int, files: int = 1) -> bytes:
    doc = {
        "services": {f"svc-{i}": service(f"svc-{i}") for i in range(services)},
        "files": {f"f-{i}": {"name": f"f-{i}", "mime_type": "text/plain", "data": "aGVsbG8="} for i in range(files)},
    }
    return json.dumps(doc).encode()


@pytest.fixture
def material() -> KeyMaterial:
    return fileformat.new_key_material(PASSWORD, FAST)


@pytest.fixture
def data_dir(tmp_path: Path, material: KeyMaterial) -> Path:
    """vault.enc with 3 services, vault.enc.bak (the save before) with 2, both under PASSWORD."""
    (tmp_path / "vault.enc.bak").write_bytes(material.encrypt(plaintext(2)))
    (tmp_path / "vault.enc").write_bytes(material.encrypt(plaintext(3)))
    for name in ("vault.enc", "vault.enc.bak"):
        (tmp_path / name).chmod(0o600)
    return tmp_path


def damage(path: Path, *, truncate: int = 0, flip_at: int | None = None) -> bytes:
    blob = bytearray(path.read_bytes())
    if flip_at is not None:
        blob[flip_at] ^= 0x10
    if truncate:
        del blob[-truncate:]
    path.write_bytes(bytes(blob))
    return bytes(blob)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_restored(data_dir: Path, damaged: bytes) -> Path:
    """vault.enc is now the backup's bytes, the damaged bytes are kept 0600, the backup is untouched."""
    backup = (data_dir / "vault.enc.bak").read_bytes()
    before = diagnose(data_dir, PASSWORD)
    assert before.verdict is Verdict.RESTORE
    restored = restore_from_backup(data_dir, before)
    assert restored.kept is not None and restored.kept.name.startswith("vault.enc.damaged-")
    assert restored.kept.read_bytes() == damaged and mode(restored.kept) == 0o600
    assert (data_dir / "vault.enc").read_bytes() == backup and mode(data_dir / "vault.enc") == 0o600
    assert (data_dir / "vault.enc.bak").read_bytes() == backup
    assert not list(data_dir.glob("*.tmp"))
    after = diagnose(data_dir, PASSWORD)
    assert after.verdict is Verdict.HEALTHY and after.vault.services == 2
    return restored.kept


def test_a_vault_that_opens_needs_nothing(data_dir):
    result = diagnose(data_dir, PASSWORD)
    assert result.verdict is Verdict.HEALTHY
    assert (result.vault.status, result.vault.services, result.vault.files) == (Status.OK, 3, 1)
    assert result.backup.ok and result.backup.services == 2
    assert result.vault.summary() == "vault.enc: ok (3 services, 1 file)"


def test_truncated_payload_is_damaged_and_restored(data_dir):
    damaged = damage(data_dir / "vault.enc", truncate=9)
    with pytest.raises(DamagedVaultError, match="the password is right"):
        fileformat.decrypt(damaged, PASSWORD)
    vault = diagnose(data_dir, PASSWORD).vault
    assert vault.status is Status.DAMAGED and "integrity check" in vault.detail
    assert_restored(data_dir, damaged)


def test_file_cut_inside_the_header_is_unreadable_and_restored(data_dir):
    damaged = damage(data_dir / "vault.enc", truncate=len((data_dir / "vault.enc").read_bytes()) - 40)
    assert diagnose(data_dir, PASSWORD).vault.status is Status.UNREADABLE
    assert_restored(data_dir, damaged)


def test_empty_file_is_restored(data_dir):
    (data_dir / "vault.enc").write_bytes(b"")
    assert diagnose(data_dir, PASSWORD).vault.status is Status.UNREADABLE
    assert_restored(data_dir, b"")


def test_bit_flip_in_the_payload_is_damaged_and_restored(data_dir):
    size = len((data_dir / "vault.enc").read_bytes())
    damaged = damage(data_dir / "vault.enc", flip_at=size // 2)
    assert diagnose(data_dir, PASSWORD).vault.status is Status.DAMAGED
    assert_restored(data_dir, damaged)


@pytest.mark.parametrize("offset", [25, 40, 70])  # salt, wrap nonce, wrapped key
def test_bit_flip_in_the_header_looks_like_a_wrong_password_and_is_restored(data_dir, offset):
    damaged = damage(data_dir / "vault.enc", flip_at=offset)
    vault = diagnose(data_dir, PASSWORD).vault
    assert vault.status is Status.WRONG_PASSWORD  # the backup's data key does not open it either
    assert_restored(data_dir, damaged)


def test_a_file_rewrapped_under_a_newer_password_is_left_alone(data_dir, material):
    newer = fileformat.new_key_material(NEW_PASSWORD, FAST, data_key=material.data_key)  # vault-cli passwd
    (data_dir / "vault.enc").write_bytes(newer.encrypt(plaintext(3)))
    before = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    result = diagnose(data_dir, PASSWORD)  # the old password: only the backup opens
    assert result.vault.status is Status.NEWER_PASSWORD and result.backup.ok
    assert result.verdict is Verdict.NEWER_PASSWORD
    assert diagnose(data_dir, NEW_PASSWORD).verdict is Verdict.HEALTHY
    assert fileformat.decrypt_with_data_key((data_dir / "vault.enc").read_bytes(), material.data_key) == plaintext(3)
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == before


def test_a_rewrapped_file_that_is_also_damaged_is_restored(data_dir, material):
    newer = fileformat.new_key_material(NEW_PASSWORD, FAST, data_key=material.data_key)
    (data_dir / "vault.enc").write_bytes(newer.encrypt(plaintext(3)))
    damaged = damage(data_dir / "vault.enc", truncate=3)
    with pytest.raises(WrongPasswordError):
        fileformat.decrypt_with_data_key(damaged, material.data_key)
    assert diagnose(data_dir, PASSWORD).vault.status is Status.WRONG_PASSWORD
    assert_restored(data_dir, damaged)  # the backup, under the password given (the older one)


def test_decrypt_with_data_key_refuses_legacy_and_foreign_keys(material):
    blob = material.encrypt(b"{}")
    assert fileformat.decrypt_with_data_key(blob, material.data_key) == b"{}"
    with pytest.raises(WrongPasswordError):
        fileformat.decrypt_with_data_key(blob, bytes(32))
    with pytest.raises(fileformat.VaultFormatError):
        fileformat.decrypt_with_data_key(b"\x00" * 80, material.data_key)


def test_legacy_files_open_and_a_legacy_backup_is_restored_as_is(tmp_path, monkeypatch):
    monkeypatch.setattr(fileformat, "DEFAULT_KDF", FAST)
    (tmp_path / "vault.enc.bak").write_bytes(fileformat.encrypt_legacy(plaintext(2, 0), PASSWORD))
    (tmp_path / "vault.enc").write_bytes(fileformat.encrypt_legacy(plaintext(3, 0), PASSWORD))
    healthy = diagnose(tmp_path, PASSWORD)
    assert healthy.verdict is Verdict.HEALTHY and healthy.vault.legacy and healthy.vault.services == 3
    assert healthy.vault.summary() == "vault.enc: ok (3 services, 0 files, the Go tool's format)"
    damaged = damage(tmp_path / "vault.enc", flip_at=60)
    assert diagnose(tmp_path, PASSWORD).vault.status is Status.WRONG_PASSWORD  # no header: cannot tell
    assert_restored(tmp_path, damaged)
    assert diagnose(tmp_path, PASSWORD).vault.legacy


def test_no_backup_refuses(data_dir):
    (data_dir / "vault.enc.bak").unlink()
    damage(data_dir / "vault.enc", truncate=5)
    result = diagnose(data_dir, PASSWORD)
    assert result.backup.status is Status.MISSING and result.verdict is Verdict.NO_BACKUP
    with pytest.raises(RecoveryError, match="no vault.enc.bak"):
        restore_from_backup(data_dir)


def test_both_bad_or_a_wrong_password_refuses(data_dir):
    assert diagnose(data_dir, "not-the-password").verdict is Verdict.BOTH_FAIL
    damage(data_dir / "vault.enc", truncate=5)
    damage(data_dir / "vault.enc.bak", flip_at=100)
    result = diagnose(data_dir, PASSWORD)
    assert result.vault.status is Status.DAMAGED and result.backup.status is Status.DAMAGED
    assert result.verdict is Verdict.BOTH_FAIL


def test_content_that_is_not_a_vault_counts_as_damaged(data_dir, material):
    (data_dir / "vault.enc").write_bytes(material.encrypt(b"not json"))
    vault = diagnose(data_dir, PASSWORD).vault
    assert vault.status is Status.DAMAGED and "not valid JSON" in vault.detail


def test_missing_vault_enc_is_restored_without_keeping_anything(data_dir):
    (data_dir / "vault.enc").unlink()
    result = diagnose(data_dir, PASSWORD)
    assert result.vault.status is Status.MISSING and result.verdict is Verdict.RESTORE
    assert restore_from_backup(data_dir, result).kept is None
    assert (data_dir / "vault.enc").read_bytes() == (data_dir / "vault.enc.bak").read_bytes()


def test_restore_refuses_when_a_file_changed_since_the_diagnosis(data_dir, material):
    damaged = damage(data_dir / "vault.enc", truncate=5)
    checked = diagnose(data_dir, PASSWORD)
    (data_dir / "vault.enc.bak").write_bytes(material.encrypt(plaintext(4)))
    with pytest.raises(RecoveryError, match="changed since"):
        restore_from_backup(data_dir, checked)
    assert (data_dir / "vault.enc").read_bytes() == damaged
    assert not list(data_dir.glob("vault.enc.damaged-*"))


def test_two_restores_in_one_second_keep_both_damaged_files(data_dir):
    first = damage(data_dir / "vault.enc", truncate=5)
    kept = [restore_from_backup(data_dir).kept]
    (data_dir / "vault.enc").write_bytes(b"second damaged copy")
    kept.append(restore_from_backup(data_dir).kept)
    assert kept[0] != kept[1]
    assert [path.read_bytes() for path in kept if path] == [first, b"second damaged copy"]


# --------------------------------------------------------------------------- vault-cli recover


def run(*args: str, password: str = PASSWORD, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["recover", "--password-stdin", *args], input=password + "\n", env=env)


def test_cli_check_then_recover(data_dir):
    damage(data_dir / "vault.enc", truncate=5)
    result = run("--check", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "vault.enc: damaged (the password is right but the content fails its integrity check)",
        "vault.enc.bak: ok (2 services, 1 file)",
    ]
    assert not list(data_dir.glob("vault.enc.damaged-*"))

    result = run(env={"VAULT_PROXY_DATA_DIR": str(data_dir)})  # the default data dir
    assert result.exit_code == 0, result.output
    kept = next(data_dir.glob("vault.enc.damaged-*"))
    assert f"restored {data_dir / 'vault.enc'} from vault.enc.bak: 2 services, 1 file" in result.output
    assert f"the damaged file is kept as {kept}" in result.output
    assert "tok-SECRET" not in result.output

    result = run("--check", "--data-dir", str(data_dir))
    assert result.exit_code == 0 and "vault.enc opens (2 services, 1 file): nothing to do" in result.output


def test_cli_refusals_exit_1_and_change_nothing(data_dir, material):
    assert run("--data-dir", str(data_dir)).exit_code == 0  # healthy: nothing to do
    result = run("--data-dir", str(data_dir), password="not-the-password")
    assert result.exit_code == 1 and "neither vault.enc nor vault.enc.bak opens" in result.output
    newer = fileformat.new_key_material(NEW_PASSWORD, FAST, data_key=material.data_key)
    (data_dir / "vault.enc").write_bytes(newer.encrypt(plaintext(3)))
    result = run("--data-dir", str(data_dir))
    assert result.exit_code == 1 and "vault.enc: intact under a newer password" in result.output
    (data_dir / "vault.enc.bak").unlink()
    result = run("--data-dir", str(data_dir))
    assert result.exit_code == 1 and "there is no vault.enc.bak" in result.output
    assert not list(data_dir.glob("vault.enc.damaged-*"))
    result = run("--data-dir", str(data_dir / "nowhere"))
    assert result.exit_code == 1 and "no vault.enc or vault.enc.bak in" in result.output
