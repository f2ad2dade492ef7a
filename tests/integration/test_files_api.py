"""Stored files: upload, list, download, limits, names, references, persistence (SPEC §11)."""

from __future__ import annotations

import os

from helpers import (
    add_service,
    assert_error,
    assert_security_headers,
    pem_secret_line,
    service_account_json,
    ssh_private_key_pem,
    upload_file,
)

MAX = 5 * 1024 * 1024


def uploaded(server, name: str | None, data: bytes, mime: str = "application/octet-stream", **kw) -> dict:
    resp = upload_file(server, name, data, mime, **kw)
    assert resp.status_code == 201, f"{resp.status_code} {resp.text}"
    assert_security_headers(resp)
    return resp.json()


def list_files(server) -> list[dict]:
    resp = server.http.get("/files", headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_upload_list_download_byte_exact(unlocked_server, secrets):
    server = unlocked_server
    blob = bytes(range(256)) * 64 + os.urandom(4096)
    text = f"api key: {secrets.new('file-content')}\n".encode()

    info = uploaded(server, "blob.bin", blob)
    assert info == {"name": "blob.bin", "mime_type": info["mime_type"], "size": len(blob)}
    assert isinstance(info["mime_type"], str) and info["mime_type"]
    notes = uploaded(server, "notes.txt", text, "text/plain")
    assert notes["size"] == len(text)
    # Without a name field the upload's filename is used.
    default = uploaded(server, None, b"defaulted", "text/plain", filename="from-filename.txt")
    assert default["name"] == "from-filename.txt"

    listing = list_files(server)
    assert [f["name"] for f in listing] == ["blob.bin", "from-filename.txt", "notes.txt"]
    assert {f["name"]: f["size"] for f in listing}["blob.bin"] == len(blob)

    for name, data in (("blob.bin", blob), ("notes.txt", text)):
        resp = server.http.get(f"/files/{name}", headers=server.admin_headers())
        assert resp.status_code == 200
        assert resp.content == data
        disposition = resp.headers.get("content-disposition", "")
        assert disposition.startswith("attachment"), disposition
        assert name in disposition
        assert_security_headers(resp)
    txt = server.http.get("/files/notes.txt", headers=server.admin_headers())
    assert txt.headers["content-type"].startswith(notes["mime_type"].split(";")[0])


def test_size_limit(unlocked_server):
    server = unlocked_server
    exact = uploaded(server, "exact.bin", b"\x00" * MAX)
    assert exact["size"] == MAX
    resp = upload_file(server, "too-big.bin", b"\x01" * (MAX + 1))
    assert_error(resp, 413, "file too large (max 5 MiB)")
    names = [f["name"] for f in list_files(server)]
    assert names == ["exact.bin"]


def test_bad_names_are_400(unlocked_server):
    server = unlocked_server
    bad = [
        "a/b",
        "../etc",
        "..",
        "a\\b",
        "..\\x",
        "a/../b",
        "tab\there",
        "nul\x00x",
        "bell\x07",
        "del\x7f",
        "line\nbreak",
        "trailing\n",
        "x" * 256,
    ]
    failures = []
    for name in bad:
        resp = upload_file(server, name, b"data", filename="safe.bin")
        if resp.status_code != 400:
            failures.append(f"{name!r}: {resp.status_code} {resp.text[:200]}")
        else:
            assert_error(resp, 400)
    assert not failures, "\n".join(failures)
    assert list_files(server) == []
    longest = uploaded(server, "y" * 255, b"ok")
    assert longest["name"] == "y" * 255


def test_upload_without_file_is_400(unlocked_server):
    server = unlocked_server
    resp = server.http.post("/files", data={"name": "nofile"}, headers=server.admin_headers())
    assert_error(resp, 400)
    resp = server.http.post("/files", json={"name": "nofile"}, headers=server.admin_headers())
    assert_error(resp, 400)
    assert list_files(server) == []


def test_delete_and_unknown(unlocked_server):
    server = unlocked_server
    uploaded(server, "gone.txt", b"bye")
    resp = server.http.delete("/files/gone.txt", headers=server.admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "deleted"}
    assert list_files(server) == []
    assert_error(server.http.get("/files/gone.txt", headers=server.admin_headers()), 404, 'file "gone.txt" not found')
    assert_error(
        server.http.delete("/files/gone.txt", headers=server.admin_headers()), 404, 'file "gone.txt" not found'
    )


def test_delete_referenced_file_is_409(unlocked_server, secrets):
    server = unlocked_server
    uploaded(server, "sa.json", service_account_json(secrets), "application/json")
    key_pem = ssh_private_key_pem()
    secrets.add(pem_secret_line(key_pem))
    uploaded(server, "deploy-key", key_pem)
    for name in ("sa-two", "sa-one"):
        add_service(
            server,
            {
                "name": name,
                "base_url": "https://bigquery.googleapis.example",
                "auth": {"type": "service_account", "file_ref": "sa.json"},
            },
        )
    add_service(
        server,
        {
            "name": "box",
            "auth": {
                "type": "ssh_key",
                "ssh_host": "ssh.example.com",
                "ssh_user": "ops",
                "ssh_key_file_ref": "deploy-key",
            },
        },
    )

    assert_error(
        server.http.delete("/files/sa.json", headers=server.admin_headers()),
        409,
        'file "sa.json" is used by services: sa-one, sa-two',
    )
    assert_error(
        server.http.delete("/files/deploy-key", headers=server.admin_headers()),
        409,
        'file "deploy-key" is used by services: box',
    )
    assert {f["name"] for f in list_files(server)} == {"sa.json", "deploy-key"}

    for name in ("sa-one", "sa-two", "box"):
        assert server.http.delete(f"/services/{name}", headers=server.admin_headers()).status_code == 200
    for name in ("sa.json", "deploy-key"):
        assert server.http.delete(f"/files/{name}", headers=server.admin_headers()).status_code == 200
    assert list_files(server) == []


def test_files_survive_restart(unlocked_server, secrets):
    server = unlocked_server
    data = os.urandom(70_000) + secrets.new("persisted-file").encode()
    uploaded(server, "keep.bin", data)

    server.restart()
    server.unlock()

    assert [f["name"] for f in list_files(server)] == ["keep.bin"]
    resp = server.http.get("/files/keep.bin", headers=server.admin_headers())
    assert resp.status_code == 200
    assert resp.content == data
