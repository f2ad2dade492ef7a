"""The ``vault-cli`` entry point: global options and the command tree."""

from __future__ import annotations

import click

from vault_proxy.cli import auth, completion, files, oauth, proxy, services, sessions, ssh, tokens
from vault_proxy.cli.common import App, VaultGroup

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=VaultGroup, context_settings=CONTEXT_SETTINGS)
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
@click.version_option(package_name="vault-proxy", prog_name="vault-cli")
@click.pass_context
def cli(ctx: click.Context, addr: str | None, allow_insecure: bool) -> None:
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
    ctx.obj = App(addr=addr, allow_insecure=allow_insecure)


for command in (
    *auth.COMMANDS,
    services.service,
    files.file,
    tokens.token,
    proxy.proxy,
    oauth.oauth2,
    ssh.ssh,
    ssh.ssh_upload,
    ssh.ssh_download,
    *sessions.COMMANDS,
    completion.completion,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="vault-cli")


if __name__ == "__main__":
    main()
