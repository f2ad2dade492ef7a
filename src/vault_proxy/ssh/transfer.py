"""SFTP transfers: the cap and errors both ways share, and the download (streamed, never a whole file in memory).

Uploads are in ``upload.py`` (temp file + rename, SPEC §12 upload rules).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncssh

from .errors import SshError
from .paths import PathRefused, check_path, normalised

TRANSFER_CAP = 50 * 1024 * 1024
CHUNK = 256 * 1024


class TransferTooLarge(SshError):
    status = 413

    def __init__(self) -> None:
        super().__init__(f"file too large (max {TRANSFER_CAP // (1024 * 1024)} MiB)")


class TransferFailed(SshError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


async def resolve_download(sftp: asyncssh.SFTPClient, path: object, allowed: Sequence[str]) -> str:
    """Check the path as given, resolve ``..`` and every symlink (the last component too) on the server,
    and check the result again: a link inside an allowed directory cannot lead a download out of it."""
    target = check_path(normalised(path), allowed)
    try:
        real = await sftp.realpath(target)
    except asyncssh.SFTPError as exc:
        raise PathRefused(f"remote_path cannot be resolved: {exc.reason}") from None
    return check_path(normalised(real), allowed)


async def download_size(sftp: asyncssh.SFTPClient, path: str) -> int:
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPError as exc:
        raise TransferFailed(f"download failed: {exc.reason}") from None
    if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
        raise PathRefused("remote_path is not a regular file")
    size = attrs.size or 0
    if size > TRANSFER_CAP:
        raise TransferTooLarge()
    return size


async def download(sftp: asyncssh.SFTPClient, path: str) -> AsyncIterator[bytes]:
    """The file's bytes in chunks; stops at the cap even if the file grew meanwhile."""
    sent = 0
    async with sftp.open(path, "rb") as remote:
        while sent < TRANSFER_CAP and (chunk := await remote.read(min(CHUNK, TRANSFER_CAP - sent))):
            sent += len(chunk)
            yield chunk
