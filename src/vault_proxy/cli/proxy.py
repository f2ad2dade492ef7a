"""``proxy SVC METHOD PATH [BODY|-]``."""

from __future__ import annotations

import json
import sys

import click

from vault_proxy.cli.common import App, fail, note, pass_app
from vault_proxy.cli.completion import complete_service


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    """``("Accept: text/plain",)`` → ``{"Accept": "text/plain"}``."""
    headers: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition(":")
        if not sep or not key.strip():
            fail(f"invalid header {key.strip() or value!r}: expected 'Name: value'")
        headers[key.strip()] = rest.strip()
    return headers


def looks_like_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


@click.command()
@click.argument("service", shell_complete=complete_service)
@click.argument("method")
@click.argument("path")
@click.argument("body", metavar="[BODY|-]", required=False)
@click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="Extra request header.")
@click.option("-i", "--include", is_flag=True, help="Print the status line and headers on stderr.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for data.")
@pass_app
def proxy(
    app: App,
    service: str,
    method: str,
    path: str,
    body: str | None,
    headers: tuple[str, ...],
    include: bool,
    timeout: float,
) -> None:
    """Call SERVICE through the vault, which injects its credential.

    The response body goes to stdout as it arrives, whatever the status; the exit code is 1
    when the status is 400 or more. A JSON BODY is sent as application/json; '-' reads stdin.

    \b
    Example:
      vault-cli proxy github GET /user
      vault-cli proxy openai POST /v1/chat/completions - < request.json
    """
    request_headers = parse_headers(headers)
    content: bytes | None = None
    if body is not None:
        content = sys.stdin.buffer.read() if body == "-" else body.encode()
        has_type = any(k.lower() == "content-type" for k in request_headers)
        if not has_type and looks_like_json(content):
            request_headers["Content-Type"] = "application/json"
    client = app.client(timeout=timeout).full()  # httpx: streams the body as it arrives
    stdout = click.get_binary_stream("stdout")
    with client.open_proxy(service, method, path, content=content, headers=request_headers) as response:
        if include:
            note(f"HTTP/{response.http_version.split('/')[-1]} {response.status_code} {response.reason_phrase}")
            for key, value in response.headers.multi_items():
                note(f"{key}: {value}")
            note("")
        for chunk in response.iter_bytes():
            stdout.write(chunk)
            stdout.flush()
        status = response.status_code
    if status >= 400:
        note(f"error: {service} answered HTTP {status}")
        raise click.exceptions.Exit(1)
