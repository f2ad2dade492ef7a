"""``ssh SVC CMD…``: run a command on an SSH service, streams and exit code as if run locally."""

from __future__ import annotations

import sys

import click

from vault_proxy.cli.common import App, pass_app


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("service")
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
