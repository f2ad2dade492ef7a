"""``token create|list|revoke``."""

from __future__ import annotations

import click

from vault_proxy.cli.common import App, expires_text, note, pass_app, print_json, print_table


@click.group()
def token() -> None:
    """Create, list and revoke access tokens.

    \b
    Example:
      export VAULT_TOKEN=$(vault-cli token create proxy --services openai --ttl 2h)
    """


@token.command()
@click.argument("scope", type=click.Choice(["admin", "proxy"]), default="proxy", required=False)
@click.option("--services", default=None, metavar="A,B", help="Restrict a proxy token to these services.")
@click.option("--ttl", default=None, metavar="DURATION", help="Lifetime, e.g. 90m, 2h, 7d (server default 24h).")
@click.option("--name", default=None, help="A label shown by 'token list'.")
@pass_app
def create(app: App, scope: str, services: str | None, ttl: str | None, name: str | None) -> None:
    """Create a token; its id is printed alone on stdout, details on stderr.

    \b
    Example:
      TOKEN=$(vault-cli token create proxy --services openai,github --ttl 2h --name agent-7)
    """
    names = [s.strip() for s in services.split(",") if s.strip()] if services else None
    created = app.client().create_token(scope, services=names, ttl=ttl, name=name)
    click.echo(created["id"])
    details = f"Created {created.get('scope', scope)} token"
    if created.get("name"):
        details += f' "{created["name"]}"'
    if created.get("services"):
        details += f" for services {', '.join(created['services'])}"
    note(f"{details}, expires {expires_text(created.get('expires_at'))}")


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List live tokens (by id prefix; full ids are never shown again).

    \b
    Example:
      vault-cli token list
    """
    items = app.client().list_tokens()
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("No tokens.")
        return
    print_table(
        ("ID PREFIX", "SCOPE", "NAME", "SERVICES", "EXPIRES"),
        (
            (
                t.get("id_prefix"),
                t.get("scope"),
                t.get("name") or "-",
                ",".join(t.get("services") or []) or "-",
                t.get("expires_at"),
            )
            for t in items
        ),
    )


@token.command()
@click.argument("token_id", metavar="ID")
@pass_app
def revoke(app: App, token_id: str) -> None:
    """Revoke a token by its full id or its id prefix (8-12 hex chars, as 'token list' shows).

    \b
    Example:
      vault-cli token revoke 3f9c2a1b7e4d
    """
    app.client().revoke_token(token_id)
    click.echo("Token revoked.")
