"""``redis SVC`` (and imap, smtp, postgres): open an auth-only TCP session and print how to reach it.

Output: ``127.0.0.1:PORT`` alone on the first line, then the one-time client secret on the second (none
with ``--no-client-secret``). ``--env`` prints shell assignments instead, for ``eval``: the address, the
secret, and the variables the protocol's usual client reads its password from (``REDISCLI_AUTH`` for
redis-cli, ``PGHOST``/``PGPORT``/``PGPASSWORD`` for psql and libpq), so the secret never sits in a
command line where other local users could read it.
"""

from __future__ import annotations

import shlex

import click

from vault_proxy.cli.common import App, pass_app
from vault_proxy.cli.completion import complete_service


def env_lines(proto: str, addr: str, secret: str | None) -> list[str]:
    """``NAME=value`` lines (shell-quoted) and one ``export`` line."""
    host, port = addr.rsplit(":", 1)
    values = {"VAULT_SESSION_ADDR": addr, "VAULT_SESSION_HOST": host, "VAULT_SESSION_PORT": port}
    if secret is not None:
        values["VAULT_SESSION_SECRET"] = secret
    if proto == "postgres":
        values.update(PGHOST=host, PGPORT=port, **({"PGPASSWORD": secret} if secret else {}))
    if proto == "redis" and secret is not None:
        values["REDISCLI_AUTH"] = secret
    return [f"{name}={shlex.quote(value)}" for name, value in values.items()] + ["export " + " ".join(values)]


def session_command(proto: str, example: str) -> click.Command:
    @click.command(
        proto,
        help=f"""Open a one-shot {proto} session on SERVICE and print 127.0.0.1:PORT, then its client secret.

    The vault logs in upstream with the stored credentials; point any {proto} client at the printed
    address and give it the client secret (second line) as its password. One connection is accepted,
    with one login attempt; unused, the port closes after --timeout seconds. --env prints shell
    assignments for eval instead (VAULT_SESSION_ADDR, _HOST, _PORT, _SECRET and the client's own
    variables).

    \b
    Example:
      {example}
    """,
    )
    @click.argument("service", shell_complete=complete_service)
    @click.option("--timeout", type=click.IntRange(1, 300), default=None, help="Seconds to wait for the client (30).")
    @click.option("--env", "as_env", is_flag=True, help="Print shell assignments to eval.")
    @click.option("--client-secret/--no-client-secret", default=True, show_default=True,
                  help="Require the one-time client secret as the local password.")  # fmt: skip
    @pass_app
    def command(app: App, service: str, timeout: int | None, as_env: bool, client_secret: bool) -> None:
        session = app.client().session(proto, service, timeout, client_secret)
        if as_env:
            click.echo("\n".join(env_lines(proto, session.addr, session.client_secret)))
            return
        click.echo(session.addr)
        if session.client_secret is not None:
            click.echo(session.client_secret)

    return command


redis = session_command("redis", 'eval "$(vault-cli redis cache --env)"; redis-cli -p "$VAULT_SESSION_PORT" PING')
smtp = session_command(
    "smtp", 'eval "$(vault-cli smtp mail --env)"; swaks --server "$VAULT_SESSION_ADDR" --auth-user any '
    '--auth-password "$VAULT_SESSION_SECRET" --to you@example.com')  # fmt: skip
imap = session_command(
    "imap", 'eval "$(vault-cli imap mail --env)"; curl -u "any:$VAULT_SESSION_SECRET" '
    '"imap://$VAULT_SESSION_ADDR/INBOX?ALL"')  # fmt: skip
postgres = session_command("postgres", "eval \"$(vault-cli postgres db --env)\"; psql -U any -d db -c 'select 1'")
