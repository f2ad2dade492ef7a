"""What an SFTP upload may not touch: SPEC §12 "Uploads never change what runs" (pure rules, no I/O).

An agent that may upload but only run a few allowlisted commands must not be able to change what those
commands, or anybody's next login, will run. The rule, applied to the path as given and again to every
directory on the way and to the target after resolving ``..`` and symlinks on the server:

1. **No uploads at all** on a service with ``ssh_allowed_commands`` and no ``ssh_allowed_paths``: any file
   (a script an allowed command runs, a config it reads, a file on its ``PATH``) could change what runs,
   and only the operator knows which directories are safe. They name them in ``ssh_allowed_paths``.
2. The download rules (``paths.check_path``): absolute; not a system location; no ``.ssh``; inside
   ``ssh_allowed_paths`` when set.
3. **No dot names, anywhere:** no component of the path may start with ``.``. That covers every shell
   start-up and login file (``.bashrc``, ``.profile``, ``.bash_login``, ``.zshenv``, ``.cshrc``,
   ``.kshrc``, ``.inputrc`` …) and every dot-directory (``.config/`` with systemd user units and
   autostart, ``.local/bin``, ``.ssh/``, ``.gnupg/``), plus the files other programs run or obey:
   ``.pam_environment``, ``.forward`` (pipes mail into a command), ``.gitconfig`` and ``.git/hooks``,
   ``.envrc``, ``.npmrc``. A home can be any directory (``/srv/git``, ``/var/lib/postgresql``), so the
   rule does not try to know which directory is one. Cost: ``.env`` or ``.well-known`` cannot be
   uploaded; use a command for those.
4. **No ``bin`` directly in a home** (the login's own home, as the SFTP server reports it, and any
   ``/home/<user>``): Debian's and Ubuntu's ``~/.profile`` put ``~/bin`` first on ``PATH``.
5. **More system locations for uploads:** ``/run`` and ``/var/run`` (``/run/systemd/system`` units load
   on the next reload), ``/var/spool`` (cron, at, mail spools), on top of the SPEC's list.
6. **No setuid or setgid mode bits**: a set-id file runs with the uploader's rights for every local user.

How the upload is written (``ssh/upload.py``) matters as much: a temporary file is created exclusively
in the target's directory and renamed over the target, so a symlink or hard link in the last component
is replaced, never followed or written through.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from .paths import PathRefused, check_path

UPLOAD_ONLY_PREFIXES = ("/run", "/var/run", "/var/spool")
SET_ID_BITS = 0o6000
NO_UPLOADS = "upload not allowed: this service restricts commands and sets no ssh_allowed_paths"
TEMP_PREFIX = ".vault-proxy-upload-"


def uploads_allowed(allowed_commands: Sequence[str], allowed_paths: Sequence[str]) -> bool:
    """Rule 1: a command allowlist without a path allowlist means no uploads."""
    return not allowed_commands or bool(allowed_paths)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def check_upload_dir(path: str, homes: Sequence[str] = ()) -> str:
    """Rules 3–5 for a directory an upload passes through or creates (``path`` normalised and resolved)."""
    parts = [part for part in path.split("/") if part]
    for part in parts:
        if part.startswith("."):
            raise PathRefused(f"remote_path through {part} is refused (dot-files and dot-directories "
                              "can change what runs)")  # fmt: skip
    for prefix in UPLOAD_ONLY_PREFIXES:
        if _under(path, prefix):
            raise PathRefused(f"remote_path under {prefix} is refused (system location)")
    for home in (*homes, *([f"/home/{parts[1]}"] if len(parts) > 1 and parts[0] == "home" else [])):
        home = posixpath.normpath(home)
        if home != "/" and _under(path, posixpath.join(home, "bin")):
            raise PathRefused(f"remote_path under {home}/bin is refused (on the login PATH)")
    return path


def check_upload_path(path: str, allowed: Sequence[str], homes: Sequence[str] = ()) -> str:
    """Rules 2–5 for the file an upload writes (or a directory it creates); ``path`` normalised."""
    check_path(path, allowed)
    return check_upload_dir(path, homes)


def check_upload_mode(mode: int) -> int:
    """Rule 6."""
    if mode & SET_ID_BITS:
        raise PathRefused("mode may not set the setuid or setgid bit")
    return mode


def temp_name(token: str) -> str:
    """The temporary file's name beside the target (fixed length: a long target name still fits NAME_MAX)."""
    return f"{TEMP_PREFIX}{token}.tmp"
