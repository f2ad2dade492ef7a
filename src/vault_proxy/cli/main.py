"""The ``vault-cli`` entry point: global options and the command tree."""

from __future__ import annotations

import importlib

import click

from vault_proxy.cli.common import App, VaultGroup

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Command name -> "module:attribute". A command's module is imported only when that command runs (or
# for --help and completion), so an agent calling ``vault-cli health`` in a loop does not pay for all.
COMMANDS = {
    "health": "auth:health",
    "unlock": "auth:unlock",
    "lock": "auth:lock",
    "passwd": "auth:passwd",
    "service": "services:service",
    "file": "files:file",
    "token": "tokens:token",
    "proxy": "proxy:proxy",
    "oauth2": "oauth:oauth2",
    "ssh": "ssh:ssh",
    "ssh-upload": "ssh:ssh_upload",
    "ssh-download": "ssh:ssh_download",
    "imap": "sessions:imap",
    "smtp": "sessions:smtp",
    "redis": "sessions:redis",
    "postgres": "sessions:postgres",
    "completion": "completion:completion",
    "audit": "audit:audit",
    "recover": "recover:recover",
}


class LazyGroup(VaultGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(f"vault_proxy.cli.{module}"), attribute)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--addr",
    metavar="ADDR",
    default=None,
    help="Vault address: http(s)://host:port or unix:/path.sock [env VAULT_ADDR; default http://127.0.0.1:8390].",
)
@click.option(
    "--allow-insecure",
    is_flag=True,
    envvar="VAULT_ALLOW_INSECURE",
    help="Allow plain http to a non-loopback host (tokens travel in clear).",
)
@click.option(
    "--ca-file",
    metavar="PEM",
    envvar="VAULT_CACERT",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Trust this CA (or self-signed certificate) for an https:// vault address [env VAULT_CACERT].",
)
@click.version_option(package_name="vault-proxy", prog_name="vault-cli")
@click.pass_context
def cli(ctx: click.Context, addr: str | None, allow_insecure: bool, ca_file: str | None) -> None:
    """Command line for vault-proxy: unlock the vault, manage services, files and tokens,
    and call services through the credential-injecting proxy.

    The token comes from VAULT_TOKEN, else from the session file written by 'unlock'
    (~/.vault-proxy/session).

    \b
    Example:
      vault-cli unlock
      echo '{"name":"openai","base_url":"https://api.openai.com","auth":{"type":"bearer","token":"sk-..."}}' \\
        | vault-cli service add -
      vault-cli proxy openai GET /v1/models
    """
    ctx.obj = App(addr=addr, allow_insecure=allow_insecure, ca_file=ca_file)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="vault-cli")


if __name__ == "__main__":
    main()
