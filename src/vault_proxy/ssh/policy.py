"""Which commands a service's allowlist lets through."""

from __future__ import annotations

from collections.abc import Sequence

# Shell syntax that could chain, substitute or redirect: never allowed on an allowlisted service.
SHELL_CONTROL = (";", "&", "|", "`", "$(", "${", "<", ">", "\n", "\r")
MAX_COMMAND_LEN = 64 * 1024


def command_allowed(command: str, allowed: Sequence[str]) -> bool:
    """True without an allowlist; else the command must be an entry, or an entry followed by a space
    and arguments, and hold no shell control syntax."""
    if not allowed:
        return True
    if any(token in command for token in SHELL_CONTROL):
        return False
    return any(command == entry or command.startswith(entry + " ") for entry in allowed if entry)
