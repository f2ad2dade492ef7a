"""``ssh SVC CMD…``: run a command on an SSH service, streams and exit code as if run locally."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

import click

from vault_proxy.cli.common import App, pass_app
from vault_proxy.cli.completion import complete_service


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("service", shell_complete=complete_service)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=float, default=None, help="Seconds before the remote command is killed (30, max 300).")
@pass_app
def ssh(app: App, service: str, command: tuple[str, ...], timeout: float | None) -> None:
    """Run COMMAND on SERVICE with its stored key; prints its stdout and stderr, exits with its code.

    The words of COMMAND are joined with spaces and run by the remote shell (quote them as one
    argument to keep remote quoting). A command killed at the timeout exits 124.

    \b
    Example:
      vault-cli ssh web1 uptime
      vault-cli ssh --timeout 120 web1 'journalctl -u nginx -n 50'
    """
    client = app.client(timeout=(timeout or 30.0) + 30.0)
    result = client.ssh_exec(service, " ".join(command), timeout)
    sys.stdout.write(result.get("stdout", ""))
    sys.stdout.flush()
    sys.stderr.write(result.get("stderr", ""))
    for stream in ("stdout", "stderr"):
        if result.get(f"{stream}_truncated"):
            click.echo(f"vault-cli: remote {stream} truncated at 10 MiB", err=True)
    if result.get("timed_out"):
        click.echo("vault-cli: remote command killed at the timeout", err=True)
    code = result.get("exit_code", 1)
    raise click.exceptions.Exit(code if isinstance(code, int) and 0 <= code <= 255 else 1)


@click.command("ssh-upload")
@click.argument("service", shell_complete=complete_service)
@click.argument("local", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.argument("remote")
@click.option("--mode", default="0644", show_default=True, help="Octal permissions of the remote file.")
@pass_app
def ssh_upload(app: App, service: str, local: Path, remote: str, mode: str) -> None:
    """Copy LOCAL to REMOTE (an absolute path) on SERVICE over SFTP (max 50 MiB).

    \b
    Example:
      vault-cli ssh-upload web1 ./site.conf /srv/nginx/site.conf --mode 0640
    """
    with local.open("rb") as stream:
        info = app.client(timeout=600.0).ssh_upload(service, stream, remote, mode)
    click.echo(f"Uploaded {info['size']} bytes to {info['remote_path']} (mode {info['mode']})")


@click.command("ssh-download")
@click.argument("service", shell_complete=complete_service)
@click.argument("remote")
@click.argument("local", metavar="[LOCAL|-]", required=False)
@pass_app
def ssh_download(app: App, service: str, remote: str, local: str | None) -> None:
    """Copy REMOTE from SERVICE to LOCAL (default: its file name here; '-' for stdout).

    \b
    Example:
      vault-cli ssh-download web1 /var/log/nginx/error.log - | tail
    """
    data = app.client(timeout=600.0).ssh_download(service, remote)
    if local == "-":
        click.get_binary_stream("stdout").write(data)
        return
    target = Path(local or PurePosixPath(remote).name or "download")
    target.write_bytes(data)
    click.echo(f"Downloaded {len(data)} bytes to {target}", err=True)
