"""``vault-cli completion``: the scripts for each shell, and TAB completion of commands and live service names."""

from __future__ import annotations

import pytest
from helpers import bearer_service, unique


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell(server, shell):
    done = server.cli("completion", shell)
    assert done.returncode == 0, done.stderr
    assert "_VAULT_CLI_COMPLETE" in done.stdout and f"{shell}_complete" in done.stdout


def _complete(server, words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash would be offered after typing ``words`` (the last word is the incomplete one)."""
    parts = words.split(" ")
    done = server.cli(env={"_VAULT_CLI_COMPLETE": "bash_complete", "COMP_WORDS": words,
                           "COMP_CWORD": str(len(parts) - 1), **(env or {})})  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]


def test_commands_and_service_names_complete(unlocked_server, secrets):
    assert "service" in _complete(unlocked_server, "vault-cli ser")
    assert {"imap", "smtp", "redis", "postgres"} <= set(_complete(unlocked_server, "vault-cli "))
    name = unique("compl")
    resp = unlocked_server.http.post("/services", json=bearer_service(name, secrets.new("t")),
                                     headers=unlocked_server.admin_headers())  # fmt: skip
    assert resp.status_code == 201
    token = {"VAULT_TOKEN": unlocked_server.admin_token}
    assert _complete(unlocked_server, "vault-cli proxy compl", token) == [name]
    assert name in _complete(unlocked_server, "vault-cli service show ", token)
    # No token, or no server: nothing offered, and no error text in the middle of a command line.
    assert _complete(unlocked_server, "vault-cli proxy compl") == []
