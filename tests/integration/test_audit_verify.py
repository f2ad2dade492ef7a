"""The tamper-evident audit log against a real server: ``vault-cli audit verify`` after real calls,
after restarts and rotation, and after the log is edited, extended, cut or reordered on disk."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import ServerHandle, add_service, bearer, bearer_service, create_token, unique


def verify(server: ServerHandle, *args: str, password: str | None = None):
    """``vault-cli audit verify --password-stdin FILE`` (or ``--no-key``): (exit code, stdout, stderr)."""
    options = ["--no-key"] if password is None else ["--password-stdin"]
    result = server.cli("audit", "verify", *options, *args, str(server.audit_path),
                        input=None if password is None else password + "\n")  # fmt: skip
    return result.returncode, result.stdout.strip(), result.stderr


def make_traffic(server: ServerHandle, secrets) -> None:
    """Admin calls, a proxy-token call, refused calls, a lock and a failed then good unlock."""
    add_service(server, bearer_service(unique("svc"), secrets.new("audit-bearer")))
    token = create_token(server, {"scope": "proxy"})["id"]
    assert server.http.get("/services", headers=bearer(token)).status_code == 200
    assert server.http.get("/services", headers=bearer("f" * 64)).status_code == 401
    assert server.http.post("/auth/lock", headers=server.admin_headers()).status_code == 200
    assert server.http.get("/tokens", headers=server.admin_headers()).status_code == 401  # locked: no key
    assert server.http.post("/auth/unlock", json={"password": "wrong-password-x"}).status_code == 401
    server.unlock()
    add_service(server, bearer_service(unique("svc"), secrets.new("audit-bearer")))


def entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_real_log_verifies_and_every_kind_of_tampering_is_reported(unlocked_server, secrets):
    server = unlocked_server
    make_traffic(server, secrets)
    code, out, err = verify(server, password=server.password)
    assert code == 0 and out.startswith("OK: ") and out.endswith(" lines, chain intact"), (out, err)
    server.stop()  # shutdown saves the last-hash record: the whole log is now covered by it
    log = entries(server.audit_path)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert any(e.get("mac") is False for e in log) and any("mac" not in e for e in log)
    code, out, err = verify(server, password=server.password)
    assert (code, out) == (0, f"OK: {len(log)} lines, chain intact"), err
    assert "last-hash record" in err and "matches" in err

    pristine = server.audit_path.read_bytes()
    lines = pristine.splitlines(keepends=True)
    added = next(i for i, e in enumerate(log) if e["action"] == "service.add" and "mac" not in e)  # a keyed line
    edited = lines[added].replace(b'"status":201', b'"status":200')
    assert edited != lines[added]

    def check(tampered: list[bytes], expected: str, *, password: str | None = server.password) -> None:
        server.audit_path.write_bytes(b"".join(tampered))
        code, out, err = verify(server, password=password)
        assert code == 1 and out.startswith(expected), (out, err)
        server.audit_path.write_bytes(pristine)

    number = added + 1
    check([*lines[:added], edited, *lines[added + 1 :]], f"line {number}: edited (its HMAC hash does not match")
    check([*lines[:added], edited, *lines[added + 1 :]], f"line {number}: edited (line {number + 1} no longer",
          password=None)  # fmt: skip
    check([*lines[: added + 1], edited, *lines[added + 1 :]], f"line {number + 1}: inserted")
    check([*lines[:added], *lines[added + 1 :]], f"line {number}: removed (1 line(s) missing before it")
    check([*lines[:added], lines[added + 1], lines[added], *lines[added + 2 :]], f"line {number}: moved")
    check(lines[:-3], f"line {len(lines) - 2}: removed (the vault's last-hash record is seq {len(lines)}")

    code, out, err = verify(server, password="not-the-password")
    assert code == 1 and "wrong master password" in err


def test_chain_survives_restart_and_a_cut_tail_is_caught_after_one(unlocked_server, secrets):
    server = unlocked_server
    make_traffic(server, secrets)
    server.restart()
    server.unlock()
    add_service(server, bearer_service(unique("svc"), secrets.new("audit-bearer")))
    log = entries(server.audit_path)
    anchor = next(e for e in log if e["action"] == "audit.anchor")
    assert anchor["record_seq"] == anchor["start_seq"]  # the shutdown's record named the last line
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert verify(server, password=server.password)[:2] == (0, f"OK: {len(log)} lines, chain intact")

    # Cut the last lines while the server is down, then start it: new lines chain on from the cut...
    server.stop()
    lines = server.audit_path.read_bytes().splitlines(keepends=True)
    server.audit_path.write_bytes(b"".join(lines[:-2]))
    server.start()
    server.unlock()
    assert "lines were cut from the log" in server.log_text()
    # ...but the anchor written at this unlock holds the vault's record, which the log no longer reaches.
    code, out, err = verify(server, password=server.password)
    position = next(i for i, e in enumerate(entries(server.audit_path)) if e.get("start_seq") == len(lines) - 2) + 1
    assert code == 1 and out.startswith(f"line {position}: removed (the vault's last-hash record found at this unlock")


def test_rotation_by_size_keeps_one_chain(start_server, secrets):
    server = start_server(start=False)
    plain_env = server._env
    server._env = lambda: {**plain_env(), "VAULT_PROXY_AUDIT_MAX_MB": "0.002"}  # rotate every ~2 KiB
    server.start()
    server.unlock(secrets.new("master-pw"))
    for _ in range(4):
        make_traffic(server, secrets)
    server.stop()
    rotated = sorted(server.data_dir.glob("audit.jsonl.*"))
    assert len(rotated) >= 3, rotated
    code, out, err = verify(server, password=server.password)
    assert code == 0 and out.startswith("OK: "), (out, err)
    assert "files: audit.jsonl." in err

    middle = server.data_dir / "audit.jsonl.2"
    middle.unlink()
    code, out, err = verify(server, password=server.password)
    assert code == 1 and ": removed (" in out and "[audit.jsonl.1 line 1]" in out, out


def test_verify_without_a_log_or_vault_fails_clearly(server):
    result = server.cli("audit", "verify", "--no-key", str(server.data_dir / "missing.jsonl"))
    assert result.returncode == 1 and "no audit log at" in result.stderr
    assert server.http.post("/auth/unlock", json={"password": "x"}).status_code in (400, 401)  # a line, no vault
    result = server.cli("audit", "verify", "--password-stdin", str(server.audit_path), input="whatever\n")
    assert result.returncode == 1 and "no vault file at" in result.stderr
