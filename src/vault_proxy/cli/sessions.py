"""``redis SVC``: open an auth-only TCP session and print the address to point a client at."""

from __future__ import annotations

import click

from vault_proxy.cli.common import App, pass_app
from vault_proxy.cli.completion import complete_service


def session_command(proto: str, example: str) -> click.Command:
    @click.command(
        proto,
        help=f"""Open a one-shot {proto} session on SERVICE and print 127.0.0.1:PORT.

    The vault logs in upstream with the stored credentials; point any {proto} client at the printed
    address (any password works locally). One connection is accepted; unused, it closes after
    --timeout seconds.

    \b
    Example:
      {example}
    """,
    )
    @click.argument("service", shell_complete=complete_service)
    @click.option("--timeout", type=click.IntRange(1, 300), default=None, help="Seconds to wait for the client (30).")
    @pass_app
    def command(app: App, service: str, timeout: int | None) -> None:
        click.echo(app.client().session(proto, service, timeout)["addr"])

    return command


redis = session_command("redis", "redis-cli -u redis://$(vault-cli redis cache)/0 PING")
smtp = session_command("smtp", "swaks --server $(vault-cli smtp mail) --to you@example.com")
imap = session_command("imap", 'curl -u any:any "imap://$(vault-cli imap mail)/INBOX?ALL"')
postgres = session_command("postgres", 'psql "host=127.0.0.1 port=$(vault-cli postgres db | cut -d: -f2) user=any"')
