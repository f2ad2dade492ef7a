"""``oauth2 authorize`` (browser consent flow) and ``oauth2 tokens`` (token health)."""

from __future__ import annotations

from pathlib import Path

import click

from vault_proxy.cli.common import App, expires_text, fail, pass_app, print_json, print_table
from vault_proxy.client.errors import VaultError


@click.group()
def oauth2() -> None:
    """OAuth2 services: create one by consenting in a browser, and watch token expiry.

    \b
    Example:
      vault-cli oauth2 authorize --client-secret-file ./client_secret.json \\
        --service gmail --base-url https://gmail.googleapis.com --scope https://mail.google.com/
      vault-cli oauth2 tokens
    """


@oauth2.command()
@click.option("--client-secret-file", "secret_file", required=True, metavar="FILE",
              help="A stored file name, or a local Google client JSON (uploaded under its file name).")  # fmt: skip
@click.option("--service", "service_name", required=True, help="Name of the service to create.")
@click.option("--base-url", required=True, help="The API the service calls, e.g. https://gmail.googleapis.com.")
@click.option("--scope", "scopes", multiple=True, help="An OAuth scope (repeat for more).")
@click.option("--redirect-uri", default=None, help="Where the provider sends the browser (default: this server).")
@click.option("--overwrite", is_flag=True, help="Replace an existing service of that name.")
@pass_app
def authorize(
    app: App, secret_file: str, service_name: str, base_url: str, scopes: tuple[str, ...], redirect_uri: str | None,
    overwrite: bool,
) -> None:  # fmt: skip
    """Print the URL to open in a browser; approving there creates the service.

    \b
    Example:
      vault-cli oauth2 authorize --client-secret-file client_secret.json --service drive \\
        --base-url https://www.googleapis.com --scope https://www.googleapis.com/auth/drive.readonly
    """
    client = app.client()
    local = Path(secret_file)
    if local.is_file():
        client.upload_file(local.name, local.read_bytes(), "application/json")
        secret_file = local.name
    try:
        started = client.oauth2_authorize(secret_file, service_name, base_url, scopes, redirect_uri, overwrite)
    except VaultError as err:
        if err.status_code != 409:
            raise
        fail(f'service "{service_name}" already exists (add --overwrite to replace it)')
    click.echo(started["auth_url"])
    click.echo(f"Open the URL above and approve; the service \"{service_name}\" is created when the browser "
               f"returns to {started['redirect_uri']} (valid 5 minutes, once).", err=True)  # fmt: skip


@oauth2.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def tokens(app: App, as_json: bool) -> None:
    """Expiry and status of every OAuth / service-account token you may use.

    \b
    Example:
      vault-cli oauth2 tokens --json
    """
    rows = app.client().token_health()
    if as_json:
        print_json(rows)
        return
    table = [[r["name"], r["auth_type"], r["token_status"], expires_text(r["expires_at"]) if r["expires_at"] else "-"]
             for r in rows]  # fmt: skip
    print_table(["NAME", "TYPE", "STATUS", "EXPIRES"], table)
