"""``file upload|list|download|delete``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from vault_proxy.cli.common import App, fail, note, pass_app, print_json
from vault_proxy.cli.completion import complete_file


@click.group()
def file() -> None:
    """Manage stored files (OAuth client secrets, service-account keys, SSH keys).

    \b
    Example:
      vault-cli file upload sa.json ./service-account.json
      vault-cli file list
    """


@file.command()
@click.argument("name", shell_complete=complete_file)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--mime-type", default=None, help="Content type (guessed from NAME when omitted).")
@pass_app
def upload(app: App, name: str, path: Path, mime_type: str | None) -> None:
    """Store the file at PATH under NAME (max 5 MiB).

    \b
    Example:
      vault-cli file upload deploy-key ~/.ssh/id_ed25519
    """
    info = app.client().upload_file(name, path.read_bytes(), mime_type)
    click.echo(f'File "{info.get("name", name)}" uploaded.')
    note(f"({info.get('size', '?')} bytes, {info.get('mime_type') or 'unknown type'})")


@file.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List stored files.

    \b
    Example:
      vault-cli file list --json
    """
    items = app.client().list_files()
    if as_json:
        print_json(items)
    elif not items:
        click.echo("No files stored.")
    else:
        for item in items:
            click.echo(file_line(item))


def file_line(item: dict) -> str:
    """One row of 'file list', as the Go tool prints it: ``  NAME(30) MIME_TYPE (SIZE bytes)``."""
    return f"  {item.get('name', ''):<30} {item.get('mime_type') or ''} ({item.get('size', 0)} bytes)"


@file.command()
@click.argument("name", shell_complete=complete_file)
@click.argument("out", metavar="[OUT|-]", required=False)
@pass_app
def download(app: App, name: str, out: str | None) -> None:
    """Fetch a stored file into OUT (default ./NAME; '-' writes to stdout).

    Files are written with mode 0600: they usually hold secrets.

    \b
    Example:
      vault-cli file download sa.json ./sa.json
      vault-cli file download sa.json - | jq .client_email
    """
    data = app.client().get_file(name)
    if out == "-":
        stdout = click.get_binary_stream("stdout")
        stdout.write(data)
        stdout.flush()
        return
    if out is None:
        if name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
            fail(f'cannot save "{name}" under its own name here: give an output path')
        out = name
    write_private(Path(out), data)
    click.echo(f'File "{name}" saved to {out} ({len(data)} bytes)')


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating it 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@file.command()
@click.argument("name", shell_complete=complete_file)
@pass_app
def delete(app: App, name: str) -> None:
    """Delete a stored file (refused while a service uses it).

    \b
    Example:
      vault-cli file delete old-key
    """
    app.client().delete_file(name)
    click.echo("File deleted.")
