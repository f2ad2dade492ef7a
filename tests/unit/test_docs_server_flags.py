"""docs/server.md's flag table lists exactly the options vault-server has."""

from __future__ import annotations

import re
from pathlib import Path

from vault_proxy.server.main import main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def test_flag_table_matches_the_server_options() -> None:
    rows = [line for line in PAGE.read_text(encoding="utf-8").splitlines() if line.startswith("| `--")]
    documented = {flag for row in rows for flag in re.findall(r"`(--[a-z-]+)`", row.split("|")[1])}
    actual = {opt for param in main.params for opt in param.opts if opt.startswith("--") and opt != "--help"}
    assert documented == actual, f"only in the docs: {documented - actual}; undocumented: {actual - documented}"
