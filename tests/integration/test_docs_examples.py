"""Every command in the docs runs: each page's shell and Python blocks, in order, against a live server.

One page = one test. A fresh vault-server (trusting the peers' CA, loopback allowed) is started and
unlocked for the page; its blocks run in one working directory with ``HOME``, ``VAULT_ADDR`` and
``VAULT_MASTER_PASSWORD`` set, shell variables carried from block to block as in one terminal. The
names the docs use (``api.example.com``, ``imap.example.com``, ...) are rewritten to local peers first
(docs_world.py). A block passes when it exits as the page says (0 unless ``exit=N``). Every secret the
page stores, and every peer credential, is then looked for in the blocks' output and in the server's
log, audit log and data dir. Conventions for writers: docs/contributing-docs.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from docs_blocks import Block, page_blocks
from docs_world import DocsWorld, documented_secrets

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
BIN = Path(sys.executable).parent
BLOCK_TIMEOUT = 120.0
STATE_TRAP = (
    'trap \'__docs_rc=$?; export -p > "$__DOCS_STATE.new"; printf "cd %q\\n" "$PWD" >> "$__DOCS_STATE.new";'
    " exit $__docs_rc' EXIT\n"
)


@pytest.fixture(scope="module")
def world() -> Iterator[DocsWorld]:
    docs_world = DocsWorld()
    yield docs_world
    docs_world.close()


def _script(block: Block, text: str, state: Path) -> str:
    """The block as a bash script: earlier blocks' variables and directory in, its own out."""
    lines = [f"__DOCS_STATE={state}", "set -a", f'[ -f "{state}" ] && source "{state}"', STATE_TRAP]
    if block.expected_exit == 0:
        lines.append("set -e -o pipefail")
    if block.lang == "python":
        lines.append(f"python - <<'__DOCS_PYTHON__'\n{text}__DOCS_PYTHON__")
    else:
        lines.append(text)
    return "\n".join(lines) + "\n"


def _run(script: Path, workdir: Path, env: dict[str, str], stdin: str) -> tuple[int, str]:
    """Run in a new session: no controlling terminal, so prompts read stdin; the whole group dies on timeout."""
    proc = subprocess.Popen(
        ["bash", str(script)],
        cwd=workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(stdin, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return -1, output + f"\n[timed out after {BLOCK_TIMEOUT:.0f} s]"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, output


def _check_json(block: Block) -> None:
    try:
        json.loads(block.text)
    except ValueError:
        for number, line in enumerate(block.text.splitlines(), 1):
            if line.strip():
                try:
                    json.loads(line)
                except ValueError as exc:
                    pytest.fail(f"{block.where}: JSON block is not valid JSON (line {number}: {exc})", pytrace=False)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_page_examples_run(page: Path, world: DocsWorld, start_server, secrets) -> None:
    blocks = page_blocks(page, REPO)
    for block in blocks:
        if block.lang == "json" and block.file_name is None:
            _check_json(block)
    if not any(block.runs or block.file_name for block in blocks):
        skipped = sum(block.lang in ("sh", "bash", "shell", "python") for block in blocks)
        print(f"{page.name}: nothing to run ({skipped} norun blocks)")
        return

    kinds = world.needed(page.read_text(encoding="utf-8"))
    server = start_server(
        "--allow-private", "127.0.0.0/8", "--allow-private", "::1/128", "--ca-file", str(world.ca_path)
    )
    workdir = server.base_dir / "work"
    workdir.mkdir()
    for value in world.prepare(kinds, workdir, server.home) + world.peer_secrets(kinds):
        secrets.add(value)
    password = secrets.new("master-pw")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env.update(
        HOME=str(server.home),
        VAULT_ADDR=server.addr,
        VAULT_PROXY_DATA_DIR=str(server.data_dir),
        VAULT_MASTER_PASSWORD=password,
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    unlocked = server.cli("unlock", "--password-stdin", input=password + "\n")
    assert unlocked.returncode == 0, unlocked.stderr
    server.password = password

    state = workdir.parent / "docs-state.sh"
    ran = norun = 0
    for number, block in enumerate(blocks):
        text = world.rewrite(block.text, kinds)
        for value in documented_secrets(text):
            secrets.add(value)
            world.upstream.llm_keys.add(value)
        if block.file_name:
            (workdir / block.file_name).write_text(text)
            continue
        if not block.runs:
            norun += block.lang in ("sh", "bash", "shell", "python")
            continue
        script = workdir.parent / f"block-{number}.sh"
        script.write_text(_script(block, text, state))
        code, output = _run(script, workdir, env, (password + "\n") * 3)
        new_state = state.with_name(state.name + ".new")
        if new_state.exists():
            new_state.replace(state)
        assert code == block.expected_exit, (
            f"{block.where}: exit {code}, expected {block.expected_exit}\n--- ran ---\n{text}--- output ---\n{output[-6000:]}"
        )
        if "shows-secret" not in block.words:
            saved = script.with_suffix(".out")
            saved.write_text(output)
            server.extra_scanned.append(saved)  # in the run's leak-scan totals too
            leaked = [value for value in secrets.secrets if value in output]
            assert not leaked, f"{block.where}: the output shows a secret ({len(leaked)}): {output[-3000:]}"
        world.approve_consents(output, lambda url: httpx.get(url, timeout=30.0))
        ran += 1
    print(f"{page.name}: {ran} blocks run, {norun} marked norun, peers {kinds or 'none'}")
