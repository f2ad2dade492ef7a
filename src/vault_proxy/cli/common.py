"""Shared CLI plumbing: the lazily built client, error wording, output helpers.

Nothing heavy is imported here: httpx and the SDK client load only when a command needs them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vault_proxy.client.errors import VaultConnectionError, VaultError

if TYPE_CHECKING:
    from vault_proxy.client.lite import LiteClient

START_HINT = "is it running? start it with 'vault-server' or 'make run'"
UNLOCK_HINT = "run 'vault-cli unlock'"
AUTH_MESSAGES = ("authorization required", "invalid token", "token expired")


class App:
    """Per-invocation state: global options and the client, built on first use."""

    def __init__(self, addr: str | None = None, allow_insecure: bool = False, ca_file: str | None = None) -> None:
        self.addr = addr
        self.allow_insecure = allow_insecure
        self.ca_file = ca_file
        self._client: LiteClient | None = None

    def client(self, timeout: float | None = 60.0) -> LiteClient:
        """The SDK client for this invocation (address and token resolved the SDK's way).

        A standard-library client, so commands start fast; ``.full()`` gives the httpx one (proxy).
        """
        if self._client is None:
            from vault_proxy.client.lite import LiteClient

            self._client = LiteClient(
                self.addr, timeout=timeout, allow_insecure=self.allow_insecure, verify=self.ca_file or True
            )
            click.get_current_context().find_root().call_on_close(self._client.close)
        return self._client


pass_app = click.make_pass_decorator(App, ensure=True)


def describe(exc: VaultError, *, vault_locked: bool = False) -> str:
    """The one-line message shown for a vault error, with a hint where one helps.

    ``vault_locked``: ``/health`` said the vault is locked (lock revokes every token, so a locked
    vault answers 401; the real cause is worth naming).
    """
    if isinstance(exc, VaultConnectionError):
        return f"cannot reach vault-server at {exc.addr} ({START_HINT})"
    message = exc.message
    if exc.status_code == 503 and "locked" in message.lower():
        return f"vault is locked ({UNLOCK_HINT})"
    if exc.status_code == 401 and message in AUTH_MESSAGES:
        if vault_locked:
            return f"vault is locked ({UNLOCK_HINT})"
        return f"{message} ({UNLOCK_HINT} or set VAULT_TOKEN)"
    return message


def is_locked(app: App | None) -> bool:
    """Ask ``/health`` whether the vault is locked (False when that fails)."""
    if app is None:
        return False
    try:
        return app.client().health().get("status") == "locked"
    except VaultError:
        return False


class VaultGroup(click.Group):
    """A click group that turns vault and I/O errors into ``error: …`` and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VaultError as exc:
            locked = exc.status_code == 401 and exc.message in AUTH_MESSAGES and is_locked(ctx.find_object(App))
            fail(describe(exc, vault_locked=locked))
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, and keep Python's exit-time flush
            # of stdout from complaining about the closed pipe.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit 1."""
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(1)


def note(message: str) -> None:
    """A line for humans on stderr (keeps stdout clean for scripts)."""
    click.echo(message, err=True)


def print_json(value: Any) -> None:
    from vault_proxy.client.models import to_jsonable

    click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Left-aligned columns separated by two spaces."""
    cells = [[str(c) for c in headers], *([("" if c is None else str(c)) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def read_stdin_text(what: str) -> str:
    """All of stdin as text; hints first when stdin is a terminal."""
    if sys.stdin.isatty():
        note(f"Reading {what} from stdin (end with Ctrl-D)...")
    return sys.stdin.read()


def read_secret_line(stream: Any) -> str:
    """One line from ``stream`` without its line ending (passwords may hold spaces)."""
    line = stream.readline()
    return line.rstrip("\r\n") if line else ""


def expires_text(expires_at: str | None) -> str:
    """``2026-11-28T17:30:30Z (in 2h)``."""
    if not expires_at:
        return "never"
    try:
        when = datetime.fromisoformat(expires_at)
    except ValueError:
        return expires_at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = int((when - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return f"{expires_at} (expired)"
    return f"{expires_at} (in {human_duration(seconds)})"


def human_duration(seconds: int) -> str:
    """``7d``, ``2h``, ``1h30m``, ``45s``: the two most significant units, rounded down."""
    counts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        counts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(counts) if count), len(counts) - 1)
    return "".join(f"{count}{unit}" for count, unit in counts[first : first + 2] if count) or "0s"


def master_password(from_stdin: bool) -> str:
    """The master password: one line from stdin (``--password-stdin``), else a prompt without echo."""
    if from_stdin:
        password = read_secret_line(sys.stdin)
        if not password:
            fail("no password on stdin")
        return password
    return click.prompt("Master password", hide_input=True)


def default_data_dir() -> Path:
    """The server's data directory as its default sees it: $VAULT_PROXY_DATA_DIR, else ~/.vault-proxy."""
    return Path(os.environ.get("VAULT_PROXY_DATA_DIR") or "~/.vault-proxy").expanduser()
