"""``service list|add|show|remove``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vault_proxy.cli.common import App, fail, note, pass_app, print_json, read_stdin_text
from vault_proxy.cli.completion import complete_service


@click.group()
def service() -> None:
    """Manage services (the credentials the proxy injects).

    \b
    Example:
      vault-cli service list
      vault-cli service add - < github.json
    """


@service.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List services (a restricted proxy token sees only its own).

    \b
    Example:
      vault-cli service list --json
    """
    items = app.client().list_services()
    if as_json:
        print_json(items)
    elif not items:
        click.echo("No services configured.")
    else:
        for item in items:
            click.echo(service_line(item))


def service_line(item: dict) -> str:
    """One row of 'service list', as the Go tool prints it: ``  NAME(20) BASE_URL (AUTH_TYPE)``."""
    return f"  {item.get('name', ''):<20} {item.get('base_url') or ''} ({item.get('auth_type') or ''})"


@service.command()
@click.argument("service_json", metavar="[JSON|@FILE|-]", required=False)
@pass_app
def add(app: App, service_json: str | None) -> None:
    """Add or replace a service from its JSON: an argument, @FILE, or stdin ('-' or nothing).

    Prefer stdin or @FILE: arguments are visible to other local users in the process list.

    \b
    Example:
      vault-cli service add @github.json
      vault-cli service add - <<'EOF'
      {"name": "github", "base_url": "https://api.github.com",
       "auth": {"type": "bearer", "token": "ghp_..."}}
      EOF
    """
    text = _service_text(service_json)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:  # report the position, never the text (it holds secrets)
        hint = ""
        if service_json and service_json[:1] not in "{[" and Path(service_json).is_file():
            hint = f" (to read the file, write @{service_json})"
        fail(f"invalid service JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}){hint}")
    if not isinstance(body, dict):
        fail("invalid service JSON: expected an object")
    info = app.client().add_service(body)
    click.echo("Service added.")
    note(f'service "{info.get("name", body.get("name"))}" saved')


def _service_text(argument: str | None) -> str:
    if argument in (None, "-"):
        return read_stdin_text("service JSON")
    if argument.startswith("@"):
        try:
            return Path(argument[1:]).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {argument[1:]}: {getattr(exc, 'strerror', None) or exc}")
    return argument


@service.command()
@click.argument("name", shell_complete=complete_service)
@pass_app
def show(app: App, name: str) -> None:
    """Show a service (never its secrets).

    \b
    Example:
      vault-cli service show github
    """
    print_json(app.client().get_service(name))


@service.command()
@click.argument("name", shell_complete=complete_service)
@pass_app
def remove(app: App, name: str) -> None:
    """Delete a service.

    \b
    Example:
      vault-cli service remove github
    """
    app.client().remove_service(name)
    click.echo("Service removed.")
