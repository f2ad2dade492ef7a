"""vault-cli behaviour that needs no running server, and the SDK's import hygiene."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vault_proxy.cli.common import describe
from vault_proxy.cli.main import cli
from vault_proxy.client.errors import VaultConnectionError, VaultError

HEAVY = ("aiohttp", "pydantic", "cryptography", "vault_proxy.server", "vault_proxy.vault")
START_MESSAGE = "(is it running? start it with 'vault-server' or 'make run')"


def closed_port() -> int:
    """A port in 20000-32767 on 127.0.0.1 where nothing listens right now."""
    for _ in range(200):
        port = random.randint(20000, 32767)
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no closed port found in 20000-32767")


def run_cli(*args: str, addr: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env.update(VAULT_ADDR=addr, HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "vault_proxy.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


# --------------------------------------------------------------------------- unreachable server


@pytest.mark.parametrize("args", [("service", "list"), ("token", "create", "proxy"), ("lock",)])
def test_unreachable_server_message_and_exit_code(tmp_path: Path, args: tuple[str, ...]) -> None:
    addr = f"http://127.0.0.1:{closed_port()}"
    result = run_cli(*args, addr=addr, home=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"error: cannot reach vault-server at {addr} {START_MESSAGE}\n"


def test_health_unreachable_says_so_as_the_go_tool(tmp_path: Path) -> None:
    """SPEC §14: ``vault-server unreachable: <err>`` on stderr, exit 1, nothing on stdout."""
    addr = f"http://127.0.0.1:{closed_port()}"
    for extra in ((), ("--json",)):
        result = run_cli("health", *extra, addr=addr, home=tmp_path)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == f"vault-server unreachable: {addr}: Connection refused {START_MESSAGE}\n"


def test_unreachable_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "missing.sock"
    result = run_cli("health", addr=f"unix:{sock}", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"vault-server unreachable: unix:{sock}: No such file or directory {START_MESSAGE}\n"


def test_insecure_address_refused_before_any_request(tmp_path: Path) -> None:
    result = run_cli("health", addr="http://10.255.255.1:8390", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: refusing plain http to non-loopback host '10.255.255.1'")
    assert "Traceback" not in result.stderr


def test_unlock_password_stdin_empty(tmp_path: Path) -> None:
    result = run_cli("unlock", "--password-stdin", addr=f"http://127.0.0.1:{closed_port()}", home=tmp_path,
                     stdin="")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "error: no password on stdin\n"
    assert not (tmp_path / ".vault-proxy").exists()


def test_service_add_bad_json_never_echoes_the_text(tmp_path: Path) -> None:
    secret = "cli-secret-Offline7Q"
    body = '{"name": "x", "auth": {"type": "bearer", "token": "' + secret + '"'  # truncated JSON
    for args, stdin in ((("service", "add", body), None), (("service", "add", "-"), body)):
        result = run_cli(*args, addr=f"http://127.0.0.1:{closed_port()}", home=tmp_path, stdin=stdin)
        assert result.returncode == 1
        assert result.stderr.startswith("error: invalid service JSON: ")
        assert secret not in result.stdout + result.stderr


def test_service_add_rejects_non_object(tmp_path: Path) -> None:
    result = run_cli("service", "add", "[1, 2]", addr=f"http://127.0.0.1:{closed_port()}", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: invalid service JSON: expected an object\n"


# --------------------------------------------------------------------------- help and messages


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            found += _all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", _all_commands(cli), ids=lambda p: " ".join(p) or "vault-cli")
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="vault-cli")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
    assert "vault-cli" in result.output.split("Example:", 1)[1]


def test_spec_commands_exist() -> None:
    commands = set(_all_commands(cli))
    for expected in [("health",), ("unlock",), ("lock",), ("passwd",), ("proxy",),
                     ("service", "list"), ("service", "add"), ("service", "show"), ("service", "remove"),
                     ("file", "upload"), ("file", "list"), ("file", "download"), ("file", "delete"),
                     ("token", "create"), ("token", "list"), ("token", "revoke")]:  # fmt: skip
        assert expected in commands


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (VaultError(503, "vault is locked"), "vault is locked (run 'vault-cli unlock')"),
        (VaultError(401, "token expired"), "token expired (run 'vault-cli unlock' or set VAULT_TOKEN)"),
        (VaultError(401, "authorization required"),
         "authorization required (run 'vault-cli unlock' or set VAULT_TOKEN)"),
        (VaultError(401, "unlock failed: wrong password or corrupted vault"),
         "unlock failed: wrong password or corrupted vault"),
        (VaultError(404, 'service "x" not found'), 'service "x" not found'),
        (VaultConnectionError("unix:/tmp/v.sock", "No such file"),
         f"cannot reach vault-server at unix:/tmp/v.sock {START_MESSAGE}"),
    ],
)  # fmt: skip
def test_error_wording(error: VaultError, message: str) -> None:
    assert describe(error) == message


def test_401_on_a_locked_vault_says_locked() -> None:
    locked = "vault is locked (run 'vault-cli unlock')"
    assert describe(VaultError(401, "invalid token"), vault_locked=True) == locked
    assert describe(VaultError(401, "authorization required"), vault_locked=True) == locked
    assert describe(VaultError(403, "admin scope required"), vault_locked=True) == "admin scope required"


# --------------------------------------------------------------------------- import hygiene


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = run_python(probe)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_import_vault_proxy_is_light() -> None:
    loaded = _loaded_after("import vault_proxy")
    assert _heavy(loaded) == []
    assert "httpx" not in loaded  # httpx waits until a client class is used
    assert "click" not in loaded


def test_sdk_classes_do_not_import_the_server_side() -> None:
    loaded = _loaded_after(
        "from vault_proxy import VaultClient, AsyncVaultClient, VaultError\n"
        "VaultClient(addr='http://127.0.0.1:1', token='x').close()"
    )
    assert _heavy(loaded) == []
    assert "httpx" in loaded


def test_vault_error_import_does_not_need_httpx() -> None:
    loaded = _loaded_after("from vault_proxy import VaultError")
    assert "httpx" not in loaded


def test_cli_module_import_is_light() -> None:
    loaded = _loaded_after("import vault_proxy.cli.main")
    assert _heavy(loaded) == []
    assert "httpx" not in loaded


def test_cli_client_does_not_import_httpx() -> None:
    """The CLI's own calls go through the standard library: httpx alone costs ~90 ms of start-up."""
    loaded = _loaded_after(
        "import vault_proxy.cli.main\n"
        "from vault_proxy.client.lite import LiteClient\n"
        "from vault_proxy import VaultError\n"
        "try:\n    LiteClient('http://127.0.0.1:9').health()\nexcept VaultError:\n    pass"
    )
    assert "httpx" not in loaded and _heavy(loaded) == []


def test_unknown_attribute() -> None:
    result = run_python("import vault_proxy; vault_proxy.nope")
    assert result.returncode == 1
    assert "has no attribute 'nope'" in result.stderr


# --------------------------------------------------------------------------- small helpers


def test_duration_and_expiry_wording() -> None:
    from datetime import UTC, datetime, timedelta

    from vault_proxy.cli.common import expires_text, human_duration

    assert human_duration(7 * 86400) == "7d"
    assert human_duration(5400) == "1h30m"
    assert human_duration(3 * 86400 + 3600 + 61) == "3d1h"
    assert human_duration(45) == "45s"
    soon = (datetime.now(UTC) + timedelta(hours=2, seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert expires_text(soon) == f"{soon} (in 2h)"
    assert expires_text("2000-01-01T00:00:00Z") == "2000-01-01T00:00:00Z (expired)"
    assert expires_text("garbage") == "garbage"


def test_proxy_header_and_body_helpers() -> None:
    from vault_proxy.cli.proxy import looks_like_json, parse_headers

    assert parse_headers(("Accept: text/plain", "X-A:b:c")) == {"Accept": "text/plain", "X-A": "b:c"}
    assert looks_like_json(b'{"a": 1}') and not looks_like_json(b"a=1")
    result = CliRunner().invoke(cli, ["proxy", "svc", "GET", "/", "-H", "no-colon"])
    assert result.exit_code == 1
    assert "expected 'Name: value'" in result.output


def test_async_client_builds_without_network() -> None:
    import asyncio

    from vault_proxy import AsyncVaultClient

    async def build() -> str:
        async with AsyncVaultClient(addr="unix:/nonexistent/vault.sock", token="t" * 64) as client:
            return repr(client)

    assert asyncio.run(build()) == "AsyncVaultClient(addr='unix:/nonexistent/vault.sock')"


def test_every_public_sdk_method_is_documented() -> None:
    import inspect

    from vault_proxy import AsyncVaultClient, VaultClient
    from vault_proxy.client.lite import LiteClient

    missing = []
    for cls in (VaultClient, AsyncVaultClient, LiteClient):
        for name, member in inspect.getmembers(cls):
            target = member.fget if isinstance(member, property) else member
            if not name.startswith("_") and callable(target) and not (target.__doc__ or "").strip():
                missing.append(f"{cls.__name__}.{name}")
    assert missing == []
