"""Encrypted file storage: multipart upload (5 MiB cap), list, download, delete."""

from __future__ import annotations

import mimetypes
import re
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from ...vault.store import StoredFile
from ..bodies import json_response
from ..context import ctx
from ..errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ..routing import endpoint

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_NAME_LEN = 255
MAX_FIELD_BYTES = 4096
_TOO_LARGE = "file too large (max 5 MiB)"
_MIME = re.compile(r"^[\w.+-]+/[\w.+-]+(; *[\w.+-]+=[\w.+\"-]+)*$")


def validate_file_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise BadRequest("file name is required")
    if len(name) > MAX_NAME_LEN:
        raise BadRequest(f"file name is longer than {MAX_NAME_LEN} characters")
    if "/" in name or "\\" in name or ".." in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest("file name must not contain '/', '\\', '..' or control characters")
    return name


@endpoint("file.list", "admin")
async def list_files(request: web.Request) -> web.Response:
    files = ctx(request).store.files
    return json_response([files[name].info() for name in sorted(files)])


@endpoint("file.upload", "admin")
async def upload_file(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_FILE_BYTES + 64 * 1024:
        raise PayloadTooLarge(_TOO_LARGE)
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("upload must be multipart/form-data with fields 'name' and 'file'")
    name, data, filename, mime = None, None, None, None
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename, mime = part.filename, part.headers.get("Content-Type")
                data = await _read_capped(part, MAX_FILE_BYTES, _TOO_LARGE)
            elif part.name == "name":
                name = (await _read_capped(part, MAX_FIELD_BYTES, "name field too large")).decode("utf-8")
            else:
                await part.release()
    except (ValueError, UnicodeDecodeError, AssertionError):
        raise BadRequest("malformed multipart body") from None
    if data is None:
        raise BadRequest("multipart field 'file' is required")
    name = validate_file_name(name or filename)
    if not mime or mime == "application/octet-stream" or not _MIME.match(mime):
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    stored = StoredFile.from_bytes(name, mime, data)
    await ctx(request).store.put_file(stored)
    return json_response(stored.info(), status=201)


async def _read_capped(part: BodyPartReader, limit: int, message: str) -> bytes:
    chunks, total = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(message)
        chunks.append(chunk)
    return b"".join(chunks)


def _stored(request: web.Request) -> StoredFile:
    name = request.match_info["name"]
    stored = ctx(request).store.files.get(name)
    if stored is None:
        raise NotFound(f'file "{name}" not found')
    return stored


@endpoint("file.download", "admin")
async def download_file(request: web.Request) -> web.Response:
    stored = _stored(request)
    ascii_name = stored.name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(stored.name)}"
    headers = {"Content-Type": stored.mime_type, "Content-Disposition": disposition}
    return web.Response(body=stored.data(), headers=headers)


@endpoint("file.delete", "admin")
async def delete_file(request: web.Request) -> web.Response:
    stored = _stored(request)
    store = ctx(request).store

    def refuse_if_referenced() -> None:
        users = sorted(n for n, s in store.services.items() if stored.name in s.file_refs())
        if users:
            raise Conflict(f'file "{stored.name}" is used by services: {", ".join(users)}')

    await store.delete_file(stored.name, check=refuse_if_referenced)
    return json_response({"status": "deleted"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/files", list_files, allow_head=False),
        web.post("/files", upload_file),
        web.get("/files/{name}", download_file, allow_head=False),
        web.delete("/files/{name}", delete_file),
    ]
