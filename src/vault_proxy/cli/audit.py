"""``audit verify``: check the audit log's hash chain offline (no server needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from vault_proxy.cli.common import default_data_dir, fail, master_password, note

AUDIT_FILE_NAME = "audit.jsonl"
VAULT_FILE_NAME = "vault.enc"


@click.group()
def audit() -> None:
    """Check the server's audit log.

    \b
    Example:
      vault-cli audit verify
    """


def _default_log() -> Path:
    configured = os.environ.get("VAULT_PROXY_AUDIT_LOG")
    if configured and configured != "-":
        return Path(configured).expanduser()
    return default_data_dir() / AUDIT_FILE_NAME


@audit.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--vault",
    "vault_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The vault file that holds the key [default: vault.enc next to FILE, else in the data dir].",
)
@click.option("--password-stdin", is_flag=True, help="Read the master password from stdin (one line).")
@click.option("--no-key", is_flag=True, help="No password: check links and unkeyed hashes only, not the HMACs.")
@click.option("--allow-missing-start", is_flag=True, help="Accept a log whose older rotated files were removed.")
def verify(
    file: Path | None, vault_path: Path | None, password_stdin: bool, no_key: bool, allow_missing_start: bool
) -> None:
    """Verify the audit log's hash chain: prints 'OK: N lines, chain intact', or the first
    edited, inserted, removed or moved line and exits 1.

    FILE defaults to $VAULT_PROXY_DATA_DIR/audit.jsonl (~/.vault-proxy/audit.jsonl); its rotated
    files FILE.1, FILE.2 … are checked with it, oldest first. With the master password (asked for,
    or --password-stdin) the key is unwrapped from vault.enc right here, so every HMAC and the
    vault's last-hash record (which catches a cut tail) are checked without trusting the server.

    \b
    Example:
      vault-cli audit verify
      printf '%s\\n' "$MASTER_PASSWORD" | vault-cli audit verify --password-stdin /srv/vault/audit.jsonl
      vault-cli audit verify --no-key audit.jsonl
    """
    from vault_proxy.audit.chain import LineMac, derive_key
    from vault_proxy.audit.verify import log_files, verify_files

    path = file or _default_log()
    files = [candidate for candidate in log_files(path) if candidate.is_file()]
    if not files:
        fail(f"no audit log at {path}")
    mac, record = None, None
    if not no_key:
        data_key, record = _unwrap(vault_path or _default_vault(path), password_stdin)
        mac = LineMac(derive_key(data_key))
    report = verify_files(files, mac=mac, record=record, allow_missing_start=allow_missing_start)
    if report.problem is not None:
        click.echo(str(report.problem))
        raise click.exceptions.Exit(1)
    click.echo(f"OK: {report.lines} lines, chain intact")
    _explain(report)


def _default_vault(log_path: Path) -> Path:
    beside = log_path.parent / VAULT_FILE_NAME
    return beside if beside.exists() else default_data_dir() / VAULT_FILE_NAME


def _unwrap(vault_path: Path, password_stdin: bool) -> tuple[bytes, Any]:
    """The vault's data key and its audit last-hash record (Argon2id runs here, ~0.3 s)."""
    from vault_proxy.audit.chain import RECORD_SECTION
    from vault_proxy.vault import fileformat

    if not vault_path.is_file():
        fail(f"no vault file at {vault_path} (give --vault PATH, or --no-key to check without it)")
    password = master_password(password_stdin)
    try:
        plaintext, material = fileformat.decrypt(vault_path.read_bytes(), password)
    except fileformat.WrongPasswordError:
        fail("wrong master password (or the vault file is damaged)")
    except fileformat.VaultFormatError as exc:
        fail(f"{vault_path}: {exc}")
    if material is None:
        fail(f"{vault_path} is still in the Go tool's format: unlock it once with vault-server to upgrade it")
    try:
        record = json.loads(plaintext).get(RECORD_SECTION)
    except (ValueError, AttributeError):
        record = None
    del plaintext
    return material.data_key, record


def _explain(report: Any) -> None:
    """What was checked, on stderr (stdout keeps the one-line verdict)."""
    if len(report.files) > 1:
        note(f"files: {', '.join(report.files)}")
    if report.unchained:
        note(f"the first {report.unchained} lines predate chaining and are not protected")
    if report.macs_checked:
        note(f"HMACs checked: {report.keyed} lines ({report.unkeyed} written while locked: SHA-256)")
    else:
        note(f"no key: links and {report.unkeyed} SHA-256 hashes checked, {report.keyed} HMACs not (--no-key)")
    if report.unsealed and report.keyed:
        note(f"the last {report.unsealed} line(s) were written while locked: no HMAC follows them")
    if report.record is not None:
        after = report.last_seq - report.record[0]
        tail = f"; the {after} line(s) after it could be cut unnoticed" if after else ""
        note(f"the vault's last-hash record (seq {report.record[0]}) matches{tail}")
    elif report.macs_checked:
        note("the vault holds no last-hash record yet: a cut tail cannot be seen")
    for text in report.notes:
        note(text)
