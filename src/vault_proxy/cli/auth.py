"""``health``, ``unlock``, ``lock``, ``passwd``."""

from __future__ import annotations

import os
import sys

import click

from vault_proxy.cli.common import (
    START_HINT,
    App,
    expires_text,
    fail,
    master_password,
    note,
    pass_app,
    read_secret_line,
)
from vault_proxy.client.errors import VaultAddressError, VaultConnectionError, VaultError


@click.command()
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Accepted; the output stays the same.")
@pass_app
def health(app: App, as_json: bool) -> None:
    """Print 'vault: locked' or 'vault: unlocked' (the Go tool's text, which scripts parse).

    An unreachable server prints 'vault-server unreachable: <reason>' on stderr and exits 1.

    \b
    Example:
      vault-cli health
    """
    client = app.client()
    try:
        status = client.health()
    except VaultAddressError:
        raise
    except VaultConnectionError as exc:
        reason = f"{exc.addr}: {exc.reason}" if exc.reason else exc.addr
        click.echo(f"vault-server unreachable: {reason} ({START_HINT})", err=True)
        raise click.exceptions.Exit(1) from None
    except VaultError as exc:
        if exc.status_code != 0:
            raise
        click.echo(f"vault-server unreachable: {exc.message}", err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(f"vault: {status.get('status', 'unknown')}")


@click.command()
@click.option("--password-stdin", is_flag=True, help="Read the master password from stdin (one line).")
@pass_app
def unlock(app: App, password_stdin: bool) -> None:
    """Unlock the vault (the first unlock creates it) and save an admin token.

    The token is written to ~/.vault-proxy/session (mode 0600) and used by later commands.

    \b
    Example:
      vault-cli unlock
      printf '%s\\n' "$MASTER_PASSWORD" | vault-cli unlock --password-stdin
    """
    from vault_proxy.client.session import write_session_token

    password = master_password(password_stdin)
    token = app.client().unlock(password)
    path = write_session_token(token["id"])
    click.echo("Vault unlocked. Session saved.")
    note(f"Admin token saved to {path}, expires at {expires_text(token.get('expires_at'))}")
    if os.environ.get("VAULT_TOKEN"):
        note("note: VAULT_TOKEN is set and takes precedence over the session file")


@click.command()
@pass_app
def lock(app: App) -> None:
    """Lock the vault: every token is revoked and the session file removed.

    \b
    Example:
      vault-cli lock
    """
    from vault_proxy.client.session import remove_session

    client = app.client()
    try:
        client.lock()
    except VaultConnectionError:
        raise
    except VaultError:
        # A stale token (the vault was locked or restarted) cannot lock; if the vault is locked
        # anyway, the goal is reached.
        if client.health().get("status") != "locked":
            raise
        remove_session()
        note("(the vault was already locked)")
        click.echo("Vault locked.")
        return
    remove_session()
    click.echo("Vault locked.")


@click.command()
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read two lines from stdin: the current password, then the new one.",
)
@pass_app
def passwd(app: App, password_stdin: bool) -> None:
    """Change the master password (needs an admin token).

    \b
    Example:
      vault-cli passwd
      printf '%s\\n%s\\n' "$OLD" "$NEW" | vault-cli passwd --password-stdin
    """
    if password_stdin:
        current = read_secret_line(sys.stdin)
        new = read_secret_line(sys.stdin)
        if not current or not new:
            fail("expected two lines on stdin: the current password, then the new one")
    else:
        current = click.prompt("Current password", hide_input=True)
        new = click.prompt("New password", hide_input=True, confirmation_prompt="Repeat new password")
    app.client().change_password(current, new)
    click.echo("Password changed.")
