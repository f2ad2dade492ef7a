"""Remote path rules for SFTP upload/download (SPEC §12): absolute, normalised, resolved, not a system path."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

SYSTEM_PREFIXES = ("/etc", "/root", "/proc", "/sys", "/dev", "/boot", "/bin", "/sbin", "/usr", "/var/spool/cron")


class PathRefused(ValueError):
    """The message says which rule refused the path (safe to show)."""


def normalised(path: object) -> str:
    if not isinstance(path, str) or not path:
        raise PathRefused("remote_path is required")
    if "\x00" in path or "\n" in path:
        raise PathRefused("remote_path contains a control character")
    if not path.startswith("/"):
        raise PathRefused("remote_path must be absolute")
    return posixpath.normpath(path).replace("//", "/")


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def check_path(path: str, allowed: Sequence[str]) -> str:
    """``path`` (already normalised and resolved) if the rules allow it, else PathRefused."""
    if path == "/":
        raise PathRefused("remote_path / is not a file")
    for prefix in SYSTEM_PREFIXES:
        if _under(path, prefix):
            raise PathRefused(f"remote_path under {prefix} is refused (system location)")
    first = path.split("/")[1]
    if first.startswith("lib"):
        raise PathRefused(f"remote_path under /{first} is refused (system location)")
    if ".ssh" in path.split("/"):
        raise PathRefused("remote_path inside a .ssh directory is refused")
    if allowed and not any(_under(path, posixpath.normpath(prefix)) for prefix in allowed):
        raise PathRefused("remote_path is outside ssh_allowed_paths for this service")
    return path
