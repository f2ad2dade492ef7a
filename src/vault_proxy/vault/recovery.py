"""Offline repair of a damaged ``vault.enc`` from ``vault.enc.bak`` (``vault-cli recover``).

Unlock answers one 401 for a wrong password and for a damaged file alike (SPEC §6), and the server
spends no extra Argon2 runs to tell them apart. This module does, with the password in hand: it
opens both files, and restores the backup only when ``vault.enc`` fails and the backup opens. A
``vault.enc`` that fails with the password but opens with the backup's data key is intact, merely
re-wrapped under a newer password (``vault-cli passwd`` keeps the data key): that one is left alone.
The damaged file is never deleted: it is kept as ``vault.enc.damaged-<UTC time>``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from . import fileformat
from .persistence import FILE_MODE, backup_path, fsync_dir, write_synced
from .store import VAULT_FILE, CorruptVaultError, parse_plaintext

DAMAGED_INFIX = ".damaged-"


class RecoveryError(Exception):
    """Restoring was refused; nothing was changed."""


class Status(StrEnum):
    OK = "ok"
    MISSING = "missing"
    DAMAGED = "damaged"  # the password is right, the content is not
    NEWER_PASSWORD = "intact under a newer password"  # opens with the backup's data key
    WRONG_PASSWORD = "wrong password or damaged header"  # the wrapped key does not open
    UNREADABLE = "unreadable"  # not a vault file we can parse (truncated header, bad magic...)


class Verdict(StrEnum):
    HEALTHY = "healthy"  # vault.enc opens: nothing to do
    RESTORE = "restore"  # vault.enc fails, the backup opens
    NEWER_PASSWORD = "newer password"  # vault.enc is intact under another password: refuse
    NO_BACKUP = "no backup"
    BOTH_FAIL = "both fail"


@dataclass(frozen=True)
class FileCheck:
    """What one file is, as seen with the password given."""

    path: Path
    status: Status
    detail: str = ""
    services: int = 0
    files: int = 0
    legacy: bool = False  # the Go tool's format
    digest: str = ""  # SHA-256 of the bytes checked ("" when missing)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def contents(self) -> str:
        """``3 services, 1 file``."""
        return f"{_count(self.services, 'service')}, {_count(self.files, 'file')}"

    def summary(self) -> str:
        """``vault.enc: ok (3 services, 1 file)`` or ``vault.enc: damaged (<why>)``."""
        if self.ok:
            legacy = ", the Go tool's format" if self.legacy else ""
            return f"{self.path.name}: ok ({self.contents()}{legacy})"
        return f"{self.path.name}: {self.status}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Diagnosis:
    vault: FileCheck
    backup: FileCheck

    @property
    def verdict(self) -> Verdict:
        if self.vault.ok:
            return Verdict.HEALTHY
        if self.vault.status is Status.NEWER_PASSWORD:
            return Verdict.NEWER_PASSWORD
        if self.backup.ok:
            return Verdict.RESTORE
        if self.backup.status is Status.MISSING:
            return Verdict.NO_BACKUP
        return Verdict.BOTH_FAIL


@dataclass(frozen=True)
class Restored:
    path: Path  # vault.enc, now a copy of the backup
    kept: Path | None  # where the damaged vault.enc went (None: there was none)


def diagnose(data_dir: Path, password: str) -> Diagnosis:
    """Classify ``vault.enc`` and ``vault.enc.bak`` in ``data_dir``. Runs Argon2 up to twice."""
    vault_path = data_dir / VAULT_FILE
    vault_blob, backup_blob = _read(vault_path), _read(backup_path(vault_path))
    vault, _ = _check(vault_path, vault_blob, password)
    backup, backup_key = _check(backup_path(vault_path), backup_blob, password)
    if vault.status is Status.WRONG_PASSWORD and backup_key is not None and vault_blob is not None:
        try:
            fileformat.decrypt_with_data_key(vault_blob, backup_key)
        except (fileformat.WrongPasswordError, fileformat.VaultFormatError):
            pass  # another key, or a damaged header: the backup is the way back
        else:
            detail = "it opens with the data key of vault.enc.bak: the master password was changed since"
            vault = replace(vault, status=Status.NEWER_PASSWORD, detail=detail)
    return Diagnosis(vault, backup)


def restore_from_backup(data_dir: Path, checked: Diagnosis | None = None) -> Restored:
    """Put a copy of ``vault.enc.bak`` in place of ``vault.enc``, crash-safely; the backup stays.

    The current ``vault.enc`` is first hard-linked (or copied) to ``vault.enc.damaged-<UTC time>``,
    so at every instant both the damaged and the restored bytes exist on disk. With ``checked``, both
    files must still be the ones diagnosed (else ``RecoveryError`` and nothing changes).
    """
    vault_path = data_dir / VAULT_FILE
    blob = _read(backup_path(vault_path))
    if blob is None:
        raise RecoveryError("there is no vault.enc.bak to restore from")
    if checked is not None and _changed_since(checked, blob, _read(vault_path)):
        raise RecoveryError("vault.enc or vault.enc.bak changed since they were checked (is a server saving?)")
    kept = _keep_aside(vault_path) if vault_path.exists() else None
    tmp = vault_path.with_name(vault_path.name + ".recover.tmp")
    write_synced(tmp, [blob])
    os.replace(tmp, vault_path)
    fsync_dir(data_dir)
    return Restored(vault_path, kept)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _changed_since(checked: Diagnosis, backup: bytes, vault: bytes | None) -> bool:
    return (_digest(backup), _digest(vault)) != (checked.backup.digest, checked.vault.digest)


def _digest(blob: bytes | None) -> str:
    return "" if blob is None else hashlib.sha256(blob).hexdigest()


def _check(path: Path, blob: bytes | None, password: str) -> tuple[FileCheck, bytes | None]:
    """The file's status, and its data key when it opens in our format."""
    if blob is None:
        return FileCheck(path, Status.MISSING), None
    digest = _digest(blob)
    try:
        plaintext, material = fileformat.decrypt(blob, password)
    except fileformat.DamagedVaultError as exc:
        return FileCheck(path, Status.DAMAGED, exc.detail, digest=digest), None
    except fileformat.WrongPasswordError:
        return FileCheck(path, Status.WRONG_PASSWORD, digest=digest), None
    except fileformat.VaultFormatError as exc:
        return FileCheck(path, Status.UNREADABLE, str(exc), digest=digest), None
    try:
        state = parse_plaintext(plaintext)  # the same reading as unlock's
    except CorruptVaultError as exc:
        return FileCheck(path, Status.DAMAGED, str(exc), digest=digest), None
    services = len(state.services) + len(state.unparsed_services)
    check = FileCheck(path, Status.OK, services=services, files=len(state.files), legacy=material is None,
                      digest=digest)  # fmt: skip
    return check, None if material is None else material.data_key


def _keep_aside(path: Path) -> Path:
    """Link (or copy) ``path`` to a new ``<name>.damaged-<UTC time>``, mode 0600."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = path.with_name(f"{path.name}{DAMAGED_INFIX}{stamp}")
    target, number = base, 1
    while target.exists():  # another recovery in the same second
        number += 1
        target = base.with_name(f"{base.name}-{number}")
    try:
        os.link(path, target)
    except FileExistsError:
        raise
    except OSError:  # file systems without hard links
        write_synced(target, [path.read_bytes()])
    os.chmod(target, FILE_MODE)
    return target


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
