"""SFTP upload that never follows a link at the target: temp file beside it, then a rename over it.

The steps (SPEC §12; the rules themselves are in ``upload_rules``):

1. The path as given is checked. The SFTP server's login directory is asked for, as the home of rule 4.
2. The deepest existing ancestor of the target's directory is found and resolved on the server
   (``realpath``: ``..`` and symlinks) and checked. Each missing directory below it is checked, created
   (``0755`` before the umask), resolved again and checked again: a directory swapped for a symlink
   meanwhile is refused.
3. The target (resolved directory + its name) is checked. An existing directory there is refused.
4. ``.vault-proxy-upload-<random>.tmp`` is created in that directory with an exclusive create (it can
   be neither an existing file nor a planted symlink), written in chunks up to the cap, given its mode
   on the open handle, then renamed over the target with ``posix-rename@openssh.com`` (atomic, replaces
   whatever entry is there: a symlink or a hard link is replaced, its target untouched). Servers without
   that extension get ``remove`` + ``rename`` (not atomic, still never follows a link). On any failure,
   cancellation included, the temporary file is removed and the old target is left as it was.

Limits of SFTP, stated plainly: it has no ``openat``, so a process on the host that swaps a *directory*
on the path for a symlink between our check and the rename is not stopped. That needs a command running
on the host; on a service with ``ssh_allowed_commands`` it needs an allowed one that can do so.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
from collections.abc import AsyncIterator, Sequence

import asyncssh

from .paths import PathRefused, normalised
from .transfer import TRANSFER_CAP, TransferFailed, TransferTooLarge
from .upload_rules import check_upload_dir, check_upload_path, temp_name

DIR_MODE = 0o755
TEMP_MODE = 0o600
CLEANUP_TIMEOUT = 5.0


async def _login_dir(sftp: asyncssh.SFTPClient) -> list[str]:
    """The directory the SFTP session starts in: the login's home on OpenSSH."""
    with contextlib.suppress(asyncssh.SFTPError):
        home = await sftp.realpath(".")
        if isinstance(home, str) and home.startswith("/"):
            return [posixpath.normpath(home)]
    return []


async def _existing_dir(sftp: asyncssh.SFTPClient, path: str) -> str | None:
    """``path`` resolved on the server if it is a directory; None if nothing is there."""
    try:
        attrs = await sftp.stat(path)  # follows symlinks: a dangling one counts as missing
        if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
            raise PathRefused(f"remote_path: {path} is not a directory")
        real = await sftp.realpath(path)
    except asyncssh.SFTPNoSuchFile:
        return None
    except asyncssh.SFTPError as exc:
        raise PathRefused(f"remote_path cannot be resolved: {exc.reason}") from None
    return normalised(real)


async def _make_parents(sftp: asyncssh.SFTPClient, directory: str, allowed: Sequence[str],
                        homes: Sequence[str]) -> str:  # fmt: skip
    """``directory`` resolved on the server, with its missing part created; every step checked."""
    missing: list[str] = []
    current = directory
    while (real := await _existing_dir(sftp, current)) is None:
        if current == "/":
            raise PathRefused("remote_path cannot be resolved: no root directory")
        missing.append(posixpath.basename(current))
        current = posixpath.dirname(current)
    check_upload_dir(real, homes)
    for name in reversed(missing):
        candidate = check_upload_path(posixpath.join(real, name), allowed, homes)
        try:
            await sftp.mkdir(candidate, asyncssh.SFTPAttrs(permissions=DIR_MODE))
        except asyncssh.SFTPError as exc:
            if await _existing_dir(sftp, candidate) is None:  # not a concurrent mkdir of the same directory
                raise PathRefused(f"cannot create directory {candidate}: {exc.reason}") from None
        real = await _existing_dir(sftp, candidate) or ""
        if real != candidate:
            raise PathRefused(f"remote_path: {candidate} changed while it was created")
    return real


async def prepare_target(sftp: asyncssh.SFTPClient, path: object, allowed: Sequence[str]) -> str:
    """The resolved, checked path an upload of ``path`` will replace (steps 1–3)."""
    given = normalised(path)
    homes = await _login_dir(sftp)
    check_upload_path(given, allowed, homes)
    directory = await _make_parents(sftp, posixpath.dirname(given), allowed, homes)
    target = check_upload_path(posixpath.join(directory, posixpath.basename(given)), allowed, homes)
    try:
        attrs = await sftp.lstat(target)
    except asyncssh.SFTPNoSuchFile:
        return target
    except asyncssh.SFTPError as exc:
        raise PathRefused(f"remote_path cannot be resolved: {exc.reason}") from None
    if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
        raise PathRefused("remote_path is a directory")
    return target


async def _rename_over(sftp: asyncssh.SFTPClient, source: str, target: str) -> None:
    try:
        await sftp.posix_rename(source, target)
    except asyncssh.SFTPOpUnsupported:
        # SFTP v3 without the OpenSSH extension: a plain rename never replaces; remove the old entry first
        # (``remove`` unlinks a symlink itself, never what it points to).
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(target)
        await sftp.rename(source, target)


async def _remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(sftp.remove(path)), CLEANUP_TIMEOUT)


async def write_replacing(sftp: asyncssh.SFTPClient, target: str, chunks: AsyncIterator[bytes], mode: int) -> int:
    """Write ``chunks`` as ``target`` with ``mode`` (step 4); returns the bytes written."""
    temp = posixpath.join(posixpath.dirname(target), temp_name(secrets.token_hex(16)))
    written, created = 0, False
    try:
        async with sftp.open(temp, "xb", asyncssh.SFTPAttrs(permissions=TEMP_MODE)) as remote:
            created = True
            async for chunk in chunks:
                written += len(chunk)
                if written > TRANSFER_CAP:
                    raise TransferTooLarge()
                await remote.write(chunk)
            await remote.chmod(mode)  # on the handle: exact (no umask), no path lookup
        await _rename_over(sftp, temp, target)
    except BaseException as exc:
        if created:
            await _remove_quietly(sftp, temp)
        if isinstance(exc, asyncssh.SFTPError):
            raise TransferFailed(f"upload failed: {exc.reason}") from None
        raise
    return written
