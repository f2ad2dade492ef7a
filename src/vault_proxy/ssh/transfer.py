"""SFTP upload and download, streamed chunk by chunk (never a whole file in memory), 50 MiB each way."""

from __future__ import annotations

import posixpath
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


async def resolve(sftp: asyncssh.SFTPClient, path: object, allowed: Sequence[str], *, must_exist: bool) -> str:
    """Check the path as given, resolve symlinks on the server, and check the result again."""
    check_path(normalised(path), allowed)
    target = normalised(path)
    try:
        if must_exist:
            real = await sftp.realpath(target)
        else:  # the file may not exist yet: resolve its directory
            real = posixpath.join(await sftp.realpath(posixpath.dirname(target)), posixpath.basename(target))
    except asyncssh.SFTPError as exc:
        raise PathRefused(f"remote_path cannot be resolved: {exc.reason}") from None
    return check_path(normalised(real), allowed)


async def upload(sftp: asyncssh.SFTPClient, path: str, chunks: AsyncIterator[bytes], mode: int) -> int:
    """Write ``chunks`` to ``path`` (created or truncated, then given ``mode``); returns the bytes written."""
    written = 0
    try:
        async with sftp.open(path, "wb", asyncssh.SFTPAttrs(permissions=mode)) as remote:
            async for chunk in chunks:
                written += len(chunk)
                if written > TRANSFER_CAP:
                    raise TransferTooLarge()
                await remote.write(chunk)
        await sftp.chmod(path, mode)  # the umask may have narrowed the mode given at open
    except asyncssh.SFTPError as exc:
        raise TransferFailed(f"upload failed: {exc.reason}") from None
    return written


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
