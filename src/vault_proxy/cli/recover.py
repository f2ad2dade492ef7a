"""``recover``: restore a damaged vault.enc from vault.enc.bak, offline (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from vault_proxy.cli.common import default_data_dir, fail, master_password

if TYPE_CHECKING:
    from vault_proxy.vault.recovery import Diagnosis, Restored

VAULT_FILE_NAME = "vault.enc"


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data directory [default: $VAULT_PROXY_DATA_DIR, else ~/.vault-proxy].",
)
@click.option("--password-stdin", is_flag=True, help="Read the master password from stdin (one line).")
@click.option("--check", is_flag=True, help="Only report on both files: exit 0 when vault.enc opens, 1 otherwise.")
def recover(data_dir: Path | None, password_stdin: bool, check: bool) -> None:
    """Restore vault.enc from vault.enc.bak when vault.enc is damaged (unlock answers 'unlock
    failed: wrong password or corrupted vault' and the server log says vault.enc looks damaged).

    Both files are opened with the master password first (asked for, or --password-stdin).
    vault.enc is replaced only when it does not open and vault.enc.bak does; the damaged file is
    kept as vault.enc.damaged-<UTC time>. Nothing changes when vault.enc opens, when it is intact
    under a newer password than the backup's (changed with 'vault-cli passwd'), or when neither opens.

    Works with the server stopped or running: it reads vault.enc again at each unlock. A server that
    is still unlocked holds the vault in memory and rewrites vault.enc from it on its next save (for
    example 'vault-cli lock'): when one is, that is the better repair.

    \b
    Example:
      vault-cli recover --check
      vault-cli recover
      printf '%s\\n' "$MASTER_PASSWORD" | vault-cli recover --password-stdin --data-dir /srv/vault
    """
    from vault_proxy.vault.recovery import RecoveryError, Verdict, diagnose, restore_from_backup

    directory = (data_dir or default_data_dir()).expanduser()
    vault_path = directory / VAULT_FILE_NAME
    backup = vault_path.with_name(vault_path.name + ".bak")
    if not vault_path.exists() and not backup.exists():
        fail(f"no {vault_path.name} or {backup.name} in {directory} (give --data-dir DIR)")
    diagnosis = diagnose(directory, master_password(password_stdin))
    click.echo(diagnosis.vault.summary())
    click.echo(diagnosis.backup.summary())
    verdict = diagnosis.verdict
    if verdict is Verdict.HEALTHY:
        click.echo(f"{vault_path.name} opens ({diagnosis.vault.contents()}): nothing to do")
        return
    if check:
        raise click.exceptions.Exit(1)
    if verdict is Verdict.NEWER_PASSWORD:
        fail(f"{vault_path.name} is intact: unlock with the current master password. Nothing was changed.")
    if verdict is Verdict.NO_BACKUP:
        fail(f"there is no {backup.name} to restore from. Nothing was changed.")
    if verdict is Verdict.BOTH_FAIL:
        fail(
            f"neither {vault_path.name} nor {backup.name} opens with this password. Nothing was changed. "
            "If the master password was changed after the backup was written, the backup opens with the "
            "previous one."
        )
    try:
        restored = restore_from_backup(directory, diagnosis)
    except RecoveryError as exc:
        fail(f"{exc}. Nothing was changed: run the command again.")
    _report(diagnosis, restored)


def _report(diagnosis: Diagnosis, restored: Restored) -> None:
    """What was done, and what it means for the data of the last save."""
    backup = diagnosis.backup
    click.echo(f"restored {restored.path} from {backup.path.name}: {backup.contents()}")
    if restored.kept is not None:
        click.echo(f"the damaged file is kept as {restored.kept}")
        click.echo(
            f"anything the last save changed exists only in the damaged file; the server saves again at lock "
            f"and shutdown, so {backup.path.name} normally holds the same services and files"
        )
    if backup.legacy:
        click.echo("the restored file is in the Go tool's format: the server upgrades it at unlock")
    click.echo("next: unlock as usual ('vault-cli unlock') with the master password given here")
