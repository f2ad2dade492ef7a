"""The chained audit log: line format, writer (restart, rotation, torn lines) and the verifier's verdicts."""

from __future__ import annotations

import hmac
import json
from hashlib import sha256
from pathlib import Path
from types import SimpleNamespace

import pytest

from vault_proxy.audit import AuditLog, audit_max_bytes
from vault_proxy.audit.chain import GENESIS, LineMac, derive_key, link_hash, parse
from vault_proxy.audit.log import rotated_path
from vault_proxy.audit.vault_link import AuditVault
from vault_proxy.audit.verify import log_files, verify_files
from vault_proxy.vault import fileformat
from vault_proxy.vault.store import VaultStore

KEY = derive_key(b"d" * 32)
MAC = LineMac(KEY)


def write_log(path: Path, count: int = 8, locked: tuple[int, ...] = (), **options: object) -> AuditLog:
    """``count`` events (``n`` = 1…count); the ones numbered in ``locked`` are written without the key."""
    log = AuditLog(path, max_bytes=options.pop("max_bytes", None))  # type: ignore[arg-type]
    for number in range(1, count + 1):
        log.set_key(None if number in locked else KEY)
        log.record("test.event", n=number, path=f"/p/{number}", **options)
    return log


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def verdict(path: Path, *, key: bool = True, record: object = None, allow_missing_start: bool = False) -> str:
    report = verify_files(
        log_files(path), mac=MAC if key else None, record=record, allow_missing_start=allow_missing_start
    )
    return "OK" if report.ok else str(report.problem)


def record_of(log: AuditLog) -> dict:
    mark = log.sync_mark()
    assert mark is not None
    return {"seq": mark[0], "sha256": mark[1]}


def forge(raw: bytes, **changes: object) -> bytes:
    """``raw`` with fields changed, re-hashed as a plain SHA-256 line ("mac":false): what a forger can do."""
    head = raw.rstrip(b"\n")
    fields = json.loads(head)
    fields.update(changes)
    body = "{" + ",".join(
        f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}"
        for k, v in fields.items()
        if k not in ("seq", "mac", "prev", "hash")
    )
    body += f',"seq":{fields["seq"]},"mac":false,"prev":"{fields["prev"]}"'
    digest = sha256(body.encode()).hexdigest()
    return (body + f',"hash":"{digest}"}}\n').encode()


# --------------------------------------------------------------------------- format and keys


def test_line_mac_is_hmac_sha256() -> None:
    for key in (KEY, b"k", b"x" * 100):
        data = b'{"a":1,"seq":1,"prev":"' + GENESIS.encode() + b'"'
        assert LineMac(key).hexdigest(data) == hmac.new(key, data, "sha256").hexdigest()


def test_key_is_derived_not_the_data_key() -> None:
    assert derive_key(b"d" * 32) == KEY and len(KEY) == 32
    assert KEY != b"d" * 32 and derive_key(b"e" * 32) != KEY


def test_lines_carry_seq_prev_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 4, locked=(2,)).close()
    raw = [line.rstrip(b"\n") for line in lines_of(path)]
    prev = GENESIS
    for number, line in enumerate(raw, 1):
        entry = json.loads(line)
        assert list(entry)[:2] == ["time", "action"] and entry["n"] == number
        assert entry["seq"] == number and entry["prev"] == prev
        assert list(entry)[-1] == "hash"
        chained = parse(line)
        assert chained is not None and chained.hash_ok(MAC) is True
        assert ("mac" in entry) == (number == 2) and chained.keyed == (number != 2)
        prev = link_hash(line)


def test_proxy_line_keeps_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.set_key(KEY)
    stats = SimpleNamespace(
        bytes_out=12, bytes_in=3, upstream_status=200, redactions=1, error='x"y', truncated=True,
        origin="https://api.example.com:443",
    )  # fmt: skip
    log.proxy_call("abcd1234", "proxy", "svc", "GET", "/proxy/svc/a", 200, 0.0123456, stats)
    log.close()
    entry = json.loads(path.read_text())
    assert entry["action"] == "proxy" and entry["duration_ms"] == 12.345 and entry["error"] == 'x"y'
    assert entry["truncated"] is True and entry["seq"] == 1 and "mac" not in entry
    assert entry["upstream"] == "https://api.example.com:443"  # the origin dialled (SPEC §9)
    assert verdict(path) == "OK"


def test_stderr_log_is_chained_too(capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(None)
    log.record("a")
    log.record("b")
    first, second = capsys.readouterr().err.splitlines()
    assert parse(second.encode()).prev == link_hash(first.encode())  # type: ignore[union-attr]


def test_rotation_size_from_environment() -> None:
    assert audit_max_bytes({}) == 100 * 1024 * 1024
    assert audit_max_bytes({"VAULT_PROXY_AUDIT_MAX_MB": "0.5"}) == 512 * 1024
    assert audit_max_bytes({"VAULT_PROXY_AUDIT_MAX_MB": "0"}) is None
    with pytest.raises(ValueError, match="VAULT_PROXY_AUDIT_MAX_MB"):
        audit_max_bytes({"VAULT_PROXY_AUDIT_MAX_MB": "lots"})


# --------------------------------------------------------------------------- verdicts


def test_intact_log_verifies_with_and_without_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write_log(path, 8, locked=(1, 2, 6))
    report = verify_files([path], mac=MAC, record=record_of(log))
    assert report.ok and report.lines == 8 and (report.keyed, report.unkeyed) == (5, 3)
    assert report.record == (8, log.sync_mark()[1])  # type: ignore[index]
    assert verdict(path, key=False) == "OK"


def test_edited_field_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path).close()
    lines = lines_of(path)
    lines[3] = lines[3].replace(b'"path":"/p/4"', b'"path":"/p/X"')
    path.write_bytes(b"".join(lines))
    assert verdict(path).startswith("line 4: edited (its HMAC hash does not match")
    # Without the key the HMAC cannot be checked, but line 5's link to it can.
    assert verdict(path, key=False) == "line 4: edited (line 5 no longer matches it)"


def test_edited_locked_line_is_found_without_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, locked=(3,)).close()
    lines = lines_of(path)
    lines[2] = lines[2].replace(b'"n":3', b'"n":33')
    path.write_bytes(b"".join(lines))
    assert verdict(path, key=False).startswith("line 3: edited (its SHA-256 hash does not match")


def test_edit_rehashed_as_a_locked_line_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path).close()
    lines = lines_of(path)
    lines[4] = forge(lines[4], path="/p/forged")
    path.write_bytes(b"".join(lines))
    assert verdict(path) == "line 5: edited (line 6 no longer matches it)"


def test_forged_tail_is_caught_by_the_vault_record(tmp_path: Path) -> None:
    """Rewriting every line from one on (as "locked" lines) keeps the links: only the record shows it."""
    path = tmp_path / "audit.jsonl"
    record = record_of(write_log(path))
    lines = lines_of(path)
    prev = json.loads(lines[4])["prev"]
    for index in range(4, 8):
        lines[index] = forge(lines[index], prev=prev, path="/p/forged")
        prev = link_hash(lines[index].rstrip(b"\n"))
    path.write_bytes(b"".join(lines))
    assert verdict(path) == "OK"  # no record: indistinguishable from lines written while locked
    assert verdict(path, record=record) == (
        "line 8: removed (the vault's last-hash record (seq 8) is not line 8: the log was cut at or before it "
        "and continued)"
    )


@pytest.mark.parametrize("key", [True, False])
def test_removed_lines_are_found(tmp_path: Path, key: bool) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path).close()
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:3] + lines[4:]))
    assert verdict(path, key=key) == "line 4: removed (1 line(s) missing before it (seq 4))"
    path.write_bytes(b"".join(lines[:3] + lines[6:]))
    assert verdict(path, key=key) == "line 4: removed (3 line(s) missing before it (seq 4-6))"


def test_inserted_lines_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path).close()
    lines = lines_of(path)
    fake = lines[2].replace(b'"path":"/p/3"', b'"path":"/p/fake"')  # a keyed line with a stale HMAC
    path.write_bytes(b"".join([*lines[:3], fake, fake, *lines[3:]]))
    assert verdict(path).startswith("line 4: inserted (line 6 links to line 3: the 2 line(s) in between")
    assert verdict(path, key=False).startswith("line 4: inserted (line 6 links to line 3")
    path.write_bytes(b"".join([*lines[:5], lines[2], *lines[5:]]))
    assert verdict(path) == "line 6: inserted (a copy of line 3)"


def test_inserted_forgery_that_links_is_found_without_key(tmp_path: Path) -> None:
    """A forger without the key may chain a fake line to line 3; line 4 still points past it."""
    path = tmp_path / "audit.jsonl"
    write_log(path).close()
    lines = lines_of(path)
    fake = forge(lines[3], path="/p/fake", prev=link_hash(lines[2].rstrip(b"\n")))
    path.write_bytes(b"".join([*lines[:3], fake, *lines[3:]]))
    expected = "line 4: inserted (line 5 links back to line 3: the lines in between do not belong)"
    assert verdict(path, key=False) == expected
    assert verdict(path) == expected


def test_reordered_lines_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path).close()
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_bytes(b"".join(lines))
    assert verdict(path) == "line 4: moved (seq 5 comes before seq 4)"
    assert verdict(path, key=False) == "line 4: moved (seq 5 comes before seq 4)"


def test_truncated_tail_is_found_from_the_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    record = record_of(write_log(path))
    lines = lines_of(path)
    path.write_bytes(b"".join(lines[:5]))
    assert verdict(path, record=record) == (
        "line 6: removed (the vault's last-hash record is seq 8, but the log only reached seq 5: its tail was cut)"
    )
    assert verdict(path) == "OK"  # without the record a cut tail cannot be seen
    path.write_bytes(b"")
    assert verdict(path, record=record).startswith("line 1: removed (the vault's last-hash record is seq 8")


def test_missing_start_is_a_removal_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path).close()
    path.write_bytes(b"".join(lines_of(path)[3:]))
    assert verdict(path) == "line 1: removed (the log starts at seq 4: earlier lines or rotated files are missing)"
    report = verify_files([path], mac=MAC, allow_missing_start=True)
    assert report.ok and report.notes == ["the log starts at seq 4 (earlier files not checked)"]


def test_lines_from_before_chaining_are_counted_not_judged(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"time":"t","action":"old"}\n{"time":"t","action":"older"}\n')
    write_log(path, 3).close()
    report = verify_files([path], mac=MAC)
    assert report.ok and report.unchained == 2 and report.lines == 5
    lines = lines_of(path)
    path.write_bytes(b"".join([lines[0], lines[1].replace(b"older", b"newer"), *lines[2:]]))
    assert verdict(path) == "line 3: removed (it does not link to the line before it)"


# --------------------------------------------------------------------------- restart and rotation


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3).close()
    again = write_log(path, 2)
    assert again.start[0] == 3 and again.seq == 5
    assert [json.loads(line)["seq"] for line in lines_of(path)] == [1, 2, 3, 4, 5]
    assert verdict(path, record=record_of(again)) == "OK"


def test_torn_last_line_is_ended_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3).close()
    with open(path, "ab") as handle:
        handle.write(b'{"time":"2026-01-01T00:00:00.000Z","action":"pro')
    log = write_log(path, 2)
    assert log.seq == 5 and len(lines_of(path)) == 6
    assert verdict(path).startswith("line 4: edited (not a complete chained audit line")


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write_log(path, 30, locked=(10, 11), max_bytes=2000)
    files = log_files(path)
    assert len(files) >= 4 and files[-1] == path and files[0] == rotated_path(path, len(files) - 1)
    first_line = lines_of(path)[0] if path.stat().st_size else None
    newest_rotated = lines_of(rotated_path(path, 1))
    if first_line is not None:  # the new file's first line chains to the old file's last one
        assert json.loads(first_line)["prev"] == link_hash(newest_rotated[-1].rstrip(b"\n"))
    record = record_of(log)
    report = verify_files(files, mac=MAC, record=record)
    assert report.ok and report.lines == 30 and report.last_seq == 30

    # A restart right after a rotation (empty live file) continues from the newest rotated file.
    log.close()
    log = AuditLog(path, max_bytes=2000)
    assert log.seq == 30

    middle = rotated_path(path, 2)
    saved = middle.read_bytes()
    middle.unlink()
    problem = verify_files(log_files(path), mac=MAC, record=record).problem
    assert problem is not None and problem.kind == "removed"
    assert problem.where.startswith(rotated_path(path, 1).name + " line 1")
    middle.write_bytes(saved)

    oldest = log_files(path)[0]
    oldest.unlink()
    assert "removed (the log starts at seq" in verdict(path, record=record)
    assert verdict(path, record=record, allow_missing_start=True) == "OK"


# --------------------------------------------------------------------------- with a real vault


async def test_vault_gives_the_key_keeps_the_record_and_anchors_restarts(tmp_path: Path, caplog) -> None:
    data, password = tmp_path / "data", "audit-test-password"
    path = data / "audit.jsonl"
    store, log = VaultStore(data), AuditLog(path)
    link = AuditVault(log, store, interval=3600)
    log.record("unlock.failed")  # locked: no key yet
    await store.unlock(password)
    log.record("service.add", status=201)
    await link.checkpoint()
    store.lock()
    log.record("lock", status=200)
    link.stop()

    plaintext, material = fileformat.decrypt(store.path.read_bytes(), password)
    assert material is not None
    record = json.loads(plaintext)["audit"]
    assert record == {"seq": 2, "sha256": link_hash(lines_of(path)[1].rstrip(b"\n"))}
    keyed = [parse(line.rstrip(b"\n")).keyed for line in lines_of(path)]  # type: ignore[union-attr]
    assert keyed == [False, True, False]
    mac = LineMac(derive_key(material.data_key))
    assert verify_files([path], mac=mac, record=record).ok
    assert not verify_files([path], mac=LineMac(derive_key(b"x" * 32)), record=record).ok

    # Cut the tail while the server is down: the next start chains on, the anchor shows the cut.
    log.close()
    path.write_bytes(lines_of(path)[0])
    store, log = VaultStore(data), AuditLog(path)
    link = AuditVault(log, store, interval=3600)
    for _ in range(3):
        log.record("unlock.failed")
    await store.unlock(password)
    log.record("unlock", status=200)
    link.stop()
    assert "the vault's last-hash record is line 2" in caplog.text
    anchor = json.loads(lines_of(path)[4])
    assert anchor["action"] == "audit.anchor" and anchor["record_seq"] == 2 and anchor["start_seq"] == 1
    report = verify_files([path], mac=mac)
    assert str(report.problem) == (
        "line 5: removed (the vault's last-hash record found at this unlock (seq 2) is not line 2: "
        "the log was cut at or before it and continued)"
    )
