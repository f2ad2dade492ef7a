"""Crash-safe file replacement: at every instant a complete ``vault.enc`` exists.

A save writes ``vault.enc.tmp`` and fsyncs it, hard-links the current file to ``vault.enc.bak``
(the previous good version, no copy), renames the new file over ``vault.enc`` and fsyncs the
directory. A kill at any point leaves either the old or the new file in place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def atomic_write(path: Path, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` with the concatenation of ``chunks``, crash-safely."""
    tmp = path.with_name(path.name + ".tmp")
    write_synced(tmp, chunks)
    if path.exists():
        _refresh_backup(path)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_synced(path: Path, chunks: Iterable[bytes]) -> None:
    """Write ``path`` (created 0600, truncated) and fsync it; the caller renames it into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _refresh_backup(path: Path) -> None:
    backup = backup_path(path)
    staging = backup.with_name(backup.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    try:
        os.link(path, staging)
        if os.stat(staging).st_mode & 0o777 != FILE_MODE:  # e.g. a vault.enc copied in with 0644
            os.chmod(staging, FILE_MODE)
    except OSError:  # file systems without hard links: copy instead
        shutil.copyfile(path, staging)
        os.chmod(staging, FILE_MODE)
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(staging, backup)


def fsync_dir(directory: Path) -> None:
    """Make renames and links in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
