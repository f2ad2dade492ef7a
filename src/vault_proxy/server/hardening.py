"""Keep the unlocked secrets out of core dumps and away from same-user debuggers (Linux).

An agent often runs as the same user as the vault. By default any process of that user may
``ptrace`` the server (``kernel.yama.ptrace_scope`` 0) and read the decrypted credentials from its
memory, and a crash would write them into a core file. ``PR_SET_DUMPABLE`` 0 turns both off for
this process: no core dump, and only a process with ``CAP_SYS_PTRACE`` (root) can attach.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource
import sys

log = logging.getLogger("vault_proxy.server")

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def harden_process() -> bool:
    """No core dumps, no ptrace by non-root processes. True when both took effect."""
    if not sys.platform.startswith("linux"):
        return False
    ok = True
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        log.warning("could not disable core dumps: %s", exc)
        ok = False
    try:
        if _prctl(PR_SET_DUMPABLE, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")
    except (OSError, AttributeError) as exc:
        log.warning("could not make the process non-dumpable (same-user debuggers can read it): %s", exc)
        ok = False
    return ok


def is_dumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE) != 0
