"""The server process refuses core dumps and same-user ptrace (checked in a child process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")

CHECK = """
import resource
from vault_proxy.server.hardening import harden_process, is_dumpable
before = is_dumpable()
assert harden_process()
print(before, is_dumpable(), resource.getrlimit(resource.RLIMIT_CORE))
"""


def test_harden_process_turns_off_dumpable_and_core_files() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=2) == ["True", "False", "(0, 0)\n"]
