"""The caller's token: explicit, else ``$VAULT_TOKEN``, else the session file.

The session file (``~/.vault-proxy/session``, honouring ``$HOME``) holds one token; it is written
0600 inside a 0700 directory, atomically (temp file + rename).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TOKEN_ENV = "VAULT_TOKEN"
SESSION_DIR_NAME = ".vault-proxy"
SESSION_FILE_NAME = "session"


def session_path() -> Path:
    """``$HOME/.vault-proxy/session``."""
    return Path(os.path.expanduser("~")) / SESSION_DIR_NAME / SESSION_FILE_NAME


def read_session_token(path: Path | None = None) -> str | None:
    """The token stored in the session file, or ``None`` when there is none."""
    path = path or session_path()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return None
    return token or None


def write_session_token(token: str, path: Path | None = None) -> Path:
    """Store ``token`` in the session file (0600, directory 0700); return the file's path."""
    path = path or session_path()
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".session.", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def remove_session(path: Path | None = None) -> bool:
    """Delete the session file; True when there was one."""
    path = path or session_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def resolve_token(explicit: str | None = None) -> str | None:
    """The token to send: ``explicit``, else ``$VAULT_TOKEN``, else the session file."""
    if explicit:
        return explicit.strip()
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    return read_session_token()
