"""``completion bash|zsh|fish``: print the shell script that completes vault-cli's commands and names.

Service and file names complete from the running vault (with the caller's token) when it answers
within a second; otherwise nothing is offered rather than an error in the middle of a command line.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem, get_completion_class

PROG = "vault-cli"
COMPLETE_VAR = "_VAULT_CLI_COMPLETE"


def _names(kind: str, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    from vault_proxy.client.errors import VaultError
    from vault_proxy.client.lite import LiteClient

    root = ctx.find_root().params
    try:
        verify = root.get("ca_file") or True
        with LiteClient(
            root.get("addr"), timeout=1.0, allow_insecure=bool(root.get("allow_insecure")), verify=verify
        ) as client:
            items = client.list_services() if kind == "service" else client.list_files()
    except (VaultError, OSError, ValueError):
        return []
    return [CompletionItem(item.name) for item in items if item.name.startswith(incomplete)]


def complete_service(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names of the services the current token may use."""
    return _names("service", ctx, incomplete)


def complete_file(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names of the stored files (admin token)."""
    return _names("file", ctx, incomplete)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL; load it from your shell's start-up file.

    Commands, options and (from the running vault) service and file names complete with TAB.

    \b
    Example:
      vault-cli completion bash > ~/.local/share/bash-completion/completions/vault-cli
      echo 'eval "$(vault-cli completion zsh)"' >> ~/.zshrc
      vault-cli completion fish > ~/.config/fish/completions/vault-cli.fish
    """
    script_class = get_completion_class(shell)
    assert script_class is not None  # every Choice above has one
    click.echo(script_class(ctx.find_root().command, {}, PROG, COMPLETE_VAR).source())
