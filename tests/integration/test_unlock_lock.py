"""Unlock, lock, brute-force lockout, restarts and password change (SPEC §2, §5, §6, §7)."""

from __future__ import annotations

import base64
import json
import os
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from helpers import (
    HEX64,
    add_service,
    assert_error,
    bearer,
    bearer_service,
    create_token,
    mode_of,
    service_names,
    unique,
)

WRONG = "unlock failed: wrong password or corrupted vault"
LOCKOUT = re.compile(r"too many attempts, retry in (\d+)s")


def unlock_raw(server, password):
    return server.http.post("/auth/unlock", json={"password": password})


def health(server) -> str:
    resp = server.http.get("/health")
    assert resp.status_code == 200
    return resp.json()["status"]


def test_first_unlock_creates_vault(start_server, secrets):
    server = start_server(create_data_dir=False)
    assert health(server) == "locked"
    password = secrets.new("first-pw")

    resp = unlock_raw(server, password)

    assert resp.status_code == 200, resp.text
    tok = resp.json()
    assert HEX64.fullmatch(tok["id"]), tok
    assert tok["scope"] == "admin"
    assert tok["created_at"] and tok["expires_at"]
    assert health(server) == "unlocked"
    vault = server.data_dir / "vault.enc"
    assert vault.is_file()
    assert mode_of(vault) == 0o600
    assert mode_of(server.data_dir) == 0o700
    assert service_names(server, tok["id"]) == []


def test_startup_line_names_address_and_data_dir(server):
    log = server.log_text()
    assert f"127.0.0.1:{server.port}" in log
    assert str(server.data_dir) in log


def test_short_password_rejected_and_nothing_created(server):
    resp = unlock_raw(server, "short7!")
    assert_error(resp, 400, "password must be at least 8 characters")
    assert not (server.data_dir / "vault.enc").exists()
    assert health(server) == "locked"


def test_wrong_password_is_401_and_keeps_state(unlocked_server, secrets):
    server = unlocked_server
    wrong = secrets.new("wrong-pw")

    assert_error(unlock_raw(server, wrong), 401, WRONG)

    # A failed unlock never changes state: still unlocked, the admin token still works.
    assert health(server) == "unlocked"
    assert server.http.get("/services", headers=server.admin_headers()).status_code == 200
    # The right password mints another admin token while unlocked; the first one keeps working.
    first = server.admin_token
    second = server.unlock()
    assert second != first and HEX64.fullmatch(second)
    assert server.http.get("/services", headers=bearer(first)).status_code == 200


def test_lockout_after_five_failures(unlocked_server, secrets):
    server = unlocked_server
    lock = server.http.post("/auth/lock", headers=server.admin_headers())
    assert lock.status_code == 200, lock.text
    wrong = secrets.new("brute-pw")

    for attempt in range(5):
        resp = unlock_raw(server, f"{wrong}-{attempt}")
        assert_error(resp, 401, WRONG)

    blocked = unlock_raw(server, f"{wrong}-6")
    msg = assert_error(blocked, 429)
    match = LOCKOUT.fullmatch(msg)
    assert match, f"lockout message {msg!r}"
    retry_after = blocked.headers.get("retry-after")
    assert retry_after is not None, "429 without Retry-After"
    assert int(retry_after) in (29, 30), retry_after
    assert match.group(1) == retry_after

    # Even the correct password is refused during the lockout, and the vault stays locked.
    right = unlock_raw(server, server.password)
    assert_error(right, 429)
    assert LOCKOUT.fullmatch(right.json()["error"])
    assert right.headers.get("retry-after")
    assert health(server) == "locked"


def test_success_resets_failure_counter(unlocked_server, secrets):
    server = unlocked_server
    wrong = secrets.new("reset-pw")
    for round_no in range(2):
        for attempt in range(4):
            assert_error(unlock_raw(server, f"{wrong}-{round_no}-{attempt}"), 401, WRONG)
        server.unlock()
    # 8 failures in all, but never 5 in a row: no lockout.
    assert_error(unlock_raw(server, f"{wrong}-last"), 401, WRONG)


def test_bad_unlock_bodies_are_400(server):
    for body in ({}, {"password": 12345678}, {"password": None}, ["password"]):
        assert_error(server.http.post("/auth/unlock", json=body), 400)
    assert_error(
        server.http.post("/auth/unlock", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "invalid JSON body",
    )
    assert health(server) == "locked"
    assert not (server.data_dir / "vault.enc").exists()


def test_restart_keeps_data_and_starts_locked(unlocked_server, secrets):
    server = unlocked_server
    name = unique("persist")
    add_service(server, bearer_service(name, secrets.new("persist-bearer")))
    old_token = server.admin_token
    assert mode_of(server.data_dir / "vault.enc") == 0o600
    assert not (server.data_dir / "vault.enc.tmp").exists()

    server.restart()

    assert health(server) == "locked"
    server.unlock()
    assert name in service_names(server)
    # Tokens are not persisted across restarts.
    assert_error(server.http.get("/services", headers=bearer(old_token)), 401, "invalid token")


def test_sigterm_is_graceful(unlocked_server):
    rc = unlocked_server.stop()
    assert not unlocked_server.last_stop_forced, "server ignored SIGTERM for 10 s"
    assert rc == 0, f"exit code after SIGTERM: {rc}"


def test_lock_requires_admin_and_revokes_tokens(unlocked_server):
    server = unlocked_server
    admin = server.admin_token
    proxy = create_token(server, {"scope": "proxy"})["id"]

    assert_error(server.http.post("/auth/lock", headers=bearer(proxy)), 403, "admin scope required")
    assert_error(server.http.post("/auth/lock"), 401, "authorization required")
    assert health(server) == "unlocked"

    resp = server.http.post("/auth/lock", headers=bearer(admin))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "locked"}
    assert health(server) == "locked"

    # Lock revoked every token: while locked the old one is simply invalid (api.md).
    assert_error(server.http.get("/services", headers=bearer(admin)), 401, "invalid token")

    # After unlocking again, tokens from before the lock stay dead.
    server.unlock()
    assert_error(server.http.get("/services", headers=bearer(admin)), 401, "invalid token")
    assert_error(server.http.get("/services", headers=bearer(proxy)), 401, "invalid token")
    assert server.http.get("/services", headers=server.admin_headers()).status_code == 200


def test_locked_vault_answers_401_on_authenticated_routes(unlocked_server):
    server = unlocked_server
    server.http.post("/auth/lock", headers=server.admin_headers())
    for path in ("/services", "/tokens", "/files"):
        assert_error(server.http.get(path), 401, "authorization required")
        assert_error(server.http.get(path, headers=bearer("ab" * 32)), 401, "invalid token")
    assert health(server) == "locked"


def test_passwd_changes_password_and_keeps_data(unlocked_server, secrets):
    server = unlocked_server
    old_pw = server.password
    new_pw = secrets.new("new-master-pw")
    name = unique("kept")
    add_service(server, bearer_service(name, secrets.new("passwd-bearer")))
    proxy = create_token(server, {"scope": "proxy"})["id"]
    body = {"current_password": old_pw, "new_password": new_pw}

    assert_error(server.http.post("/auth/passwd", json=body), 401, "authorization required")
    assert_error(server.http.post("/auth/passwd", json=body, headers=bearer(proxy)), 403, "admin scope required")
    wrong = {"current_password": secrets.new("not-current"), "new_password": new_pw}
    assert_error(server.http.post("/auth/passwd", json=wrong, headers=server.admin_headers()), 401)
    short = {"current_password": old_pw, "new_password": "short"}
    assert_error(server.http.post("/auth/passwd", json=short, headers=server.admin_headers()), 400)

    resp = server.http.post("/auth/passwd", json=body, headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "password changed"}

    server.restart()
    assert_error(unlock_raw(server, old_pw), 401, WRONG)
    server.unlock(new_pw)
    assert name in service_names(server)


def go_tool_vault(password: str, plaintext: bytes) -> bytes:
    """The Go tool's file, written independently of our code: salt(16) | nonce(12) | AES-256-GCM."""
    salt, nonce = os.urandom(16), os.urandom(12)
    key = Argon2id(salt=salt, length=32, iterations=3, lanes=4, memory_cost=64 * 1024).derive(password.encode())
    return salt + nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def test_unlock_reads_go_tool_vault_and_migrates_it(server, secrets):
    password = secrets.new("go-master-pw")
    token = secrets.new("go-bearer")
    file_bytes = b"legacy file " + secrets.new("go-file").encode()
    plaintext = {
        "services": {
            "legacy-api": {
                "name": "legacy-api",
                "base_url": "https://api.example.com",
                "auth": {"type": "bearer", "token": token},
            }
        },
        "files": {
            "legacy.txt": {
                "name": "legacy.txt",
                "mime_type": "text/plain",
                "data": base64.b64encode(file_bytes).decode(),
            }
        },
    }
    vault = server.data_dir / "vault.enc"
    legacy = go_tool_vault(password, json.dumps(plaintext).encode())
    vault.write_bytes(legacy)
    vault.chmod(0o600)

    server.unlock(password)
    assert service_names(server) == ["legacy-api"]
    got = server.http.get("/files/legacy.txt", headers=server.admin_headers())
    assert got.status_code == 200 and got.content == file_bytes

    # The next save rewrites the file in our format; it still opens after a restart.
    add_service(server, bearer_service("after-migration", secrets.new("go-after")))
    assert vault.read_bytes()[:16] != legacy[:16]
    assert mode_of(vault) == 0o600
    server.restart()
    server.unlock(password)
    assert service_names(server) == ["after-migration", "legacy-api"]


def test_unlock_audit_line_names_the_minted_token(unlocked_server):
    lines = [json.loads(line) for line in unlocked_server.audit_path.read_text().splitlines()]
    unlock = [line for line in lines if line["action"] == "unlock"][-1]
    assert unlock["status"] == 200 and unlock["scope"] == "admin"
    assert unlocked_server.admin_token.startswith(unlock["token"]) and len(unlock["token"]) == 8
