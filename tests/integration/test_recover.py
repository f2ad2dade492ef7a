"""``vault-cli recover`` against a real server: a damaged vault.enc gets the SPEC's 401 (with a hint in
the server log only), the command restores vault.enc.bak and keeps the damaged file, and every service
is back at the next unlock — with the server left running, and after a restart."""

from __future__ import annotations

import pytest
from helpers import ServerHandle, add_service, assert_error, bearer_service, mode_of, service_names, unique

UNLOCK_FAILED = "unlock failed: wrong password or corrupted vault"


def truncate(blob: bytes) -> bytes:
    return blob[: len(blob) // 2]


def flip_middle_bit(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 0x04]) + blob[middle + 1 :]


def recover(server: ServerHandle, *options: str):
    return server.cli("recover", "--password-stdin", "--data-dir", str(server.data_dir), *options,
                      input=f"{server.password}\n")  # fmt: skip


@pytest.mark.parametrize("damage", [truncate, flip_middle_bit], ids=["truncated", "bit-flip"])
def test_recover_restores_a_damaged_vault(unlocked_server, secrets, damage):
    server = unlocked_server
    names = [unique("svc") for _ in range(3)]
    for name in names:
        add_service(server, bearer_service(name, secrets.new("recover-bearer")))
    # Lock saves again (the audit record), so vault.enc.bak then holds every service too.
    assert server.http.post("/auth/lock", headers=server.admin_headers()).status_code == 200
    server.stop()
    vault = server.data_dir / "vault.enc"
    damaged = damage(vault.read_bytes())
    vault.write_bytes(damaged)

    server.start()
    response = server.http.post("/auth/unlock", json={"password": server.password})
    assert_error(response, 401, UNLOCK_FAILED)
    assert "recover" not in response.text
    assert "vault.enc looks damaged: run 'vault-cli recover'" in server.log_text()

    check = recover(server, "--check")
    assert check.returncode == 1 and check.stdout.startswith("vault.enc: damaged"), check.stdout + check.stderr
    result = recover(server)  # the server keeps running, locked
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    kept = list(server.data_dir.glob("vault.enc.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged and mode_of(kept[0]) == 0o600
    assert f"the damaged file is kept as {kept[0]}" in result.stdout
    assert "3 services, 0 files" in result.stdout
    assert not [secret for secret in secrets.secrets if secret in output]
    assert mode_of(vault) == 0o600 and vault.read_bytes() == (server.data_dir / "vault.enc.bak").read_bytes()

    server.unlock()  # the running server reads the restored file
    assert set(names) <= set(service_names(server))
    server.restart()
    server.unlock()
    assert set(names) <= set(service_names(server))
    verified = server.cli("audit", "verify", "--password-stdin", str(server.audit_path), input=f"{server.password}\n")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_recover_leaves_a_healthy_vault_alone(unlocked_server, secrets):
    server = unlocked_server
    add_service(server, bearer_service(unique("svc"), secrets.new("recover-bearer")))
    server.stop()
    before = {path.name: path.read_bytes() for path in server.data_dir.glob("vault.enc*")}
    result = recover(server)
    assert result.returncode == 0 and "vault.enc opens (1 service, 0 files): nothing to do" in result.stdout
    assert {path.name: path.read_bytes() for path in server.data_dir.glob("vault.enc*")} == before
