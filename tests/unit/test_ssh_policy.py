"""The SSH command allowlist."""

from __future__ import annotations

import pytest

from vault_proxy.ssh.policy import command_allowed

ALLOWED = ["uptime", "ls -la", "systemctl status"]


@pytest.mark.parametrize("command", ["uptime", "ls -la", "ls -la /var/log", "systemctl status nginx"])
def test_entry_or_entry_with_arguments_passes(command):
    assert command_allowed(command, ALLOWED)


@pytest.mark.parametrize(
    "command",
    ["uptime; id", "uptime && id", "uptime || id", "uptime | sh", "echo $(id)", "ls -la `id`", "ls -la ${HOME}",
     "ls -la > /tmp/x", "ls -la < /etc/passwd", "uptime\nid", "uptime\rid", "uptime &", "uptimex", "ls", "ls -lah",
     "systemctl restart nginx", "id", ""],
)  # fmt: skip
def test_anything_else_is_refused(command):
    assert not command_allowed(command, ALLOWED)


def test_no_allowlist_allows_everything():
    assert command_allowed("echo hi && id", [])
