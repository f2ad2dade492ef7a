"""The unlocked vault in memory, and its persistence.

One writer at a time (an ``asyncio.Lock``); readers use the in-memory model. Every mutation
builds the new state, saves it (encryption and fsync run in a thread), and only then replaces
the in-memory state — so a failed save changes nothing and an acknowledged write is on disk.
Saves reuse the unwrapped data key: no Argon2 run per write.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fileformat
from .fileformat import KeyMaterial
from .models import Service
from .persistence import atomic_write, backup_path, ensure_private_dir
from .validation import ServiceValidationError, parse_stored_service

log = logging.getLogger(__name__)
VAULT_FILE = "vault.enc"
MIN_PASSWORD_LEN = 8


class VaultLockedError(Exception):
    pass


class PasswordTooShortError(ValueError):
    pass


class CorruptVaultError(Exception):
    """The file decrypted but its content is not a vault we understand."""


@dataclass(frozen=True)
class StoredFile:
    name: str
    mime_type: str
    data_b64: str
    size: int

    @classmethod
    def from_bytes(cls, name: str, mime_type: str, data: bytes) -> StoredFile:
        return cls(name, mime_type, base64.b64encode(data).decode("ascii"), len(data))

    def data(self) -> bytes:
        return base64.b64decode(self.data_b64)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "mime_type": self.mime_type, "size": self.size}


@dataclass
class _State:
    services: dict[str, Service] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)
    # Pre-serialised JSON of each service, and of the whole files section: files are the bulk of a
    # large vault and change rarely, so a service write re-encodes neither.
    service_json: dict[str, bytes] = field(default_factory=dict)
    files_section: bytes | None = None
    # Entries we could not parse (e.g. from a newer or older tool) are kept verbatim, never dropped,
    # and listed with the reason until they are replaced or removed (SPEC §8).
    unparsed_services: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    unreadable_reasons: dict[str, str] = field(default_factory=dict)

    def copy(self) -> _State:
        return _State(
            dict(self.services), dict(self.files), dict(self.service_json), self.files_section,
            dict(self.unparsed_services), dict(self.extras), dict(self.unreadable_reasons),
        )  # fmt: skip

    def plaintext_parts(self) -> list[bytes]:
        """The vault JSON in pieces (the big files section is never copied into a joined buffer)."""
        services = list(self.service_json.values())
        services += [_entry(name, raw) for name, raw in self.unparsed_services.items()]
        if self.files_section is None:
            self.files_section = b",".join(_file_entry(stored) for stored in self.files.values())
        extras = b"".join(b"," + _entry(key, value) for key, value in self.extras.items())
        return [b'{"services":{' + b",".join(services) + b'},"files":{', self.files_section, b"}" + extras + b"}"]

    def plaintext(self) -> bytes:
        return b"".join(self.plaintext_parts())

    def set_service(self, service: Service) -> None:
        self.services[service.name] = service
        self.service_json[service.name] = _entry(service.name, service.stored_dict())
        self.unparsed_services.pop(service.name, None)
        self.unreadable_reasons.pop(service.name, None)

    def drop_service(self, name: str) -> None:
        self.services.pop(name, None)
        self.service_json.pop(name, None)
        self.unparsed_services.pop(name, None)
        self.unreadable_reasons.pop(name, None)

    def set_file(self, stored: StoredFile) -> None:
        self.files[stored.name] = stored
        self.files_section = None

    def drop_file(self, name: str) -> None:
        if self.files.pop(name, None) is not None:
            self.files_section = None


def _entry(key: str, value: Any) -> bytes:
    return json.dumps({key: value}, separators=(",", ":"))[1:-1].encode("utf-8")


def _file_entry(stored: StoredFile) -> bytes:
    record = {"name": stored.name, "mime_type": stored.mime_type, "data": stored.data_b64}
    return _entry(stored.name, record)


def _b64_size(data_b64: str) -> int:
    return len(data_b64) * 3 // 4 - data_b64[-2:].count("=")


def parse_plaintext(plaintext: bytes) -> _State:
    try:
        doc = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptVaultError("vault content is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise CorruptVaultError("vault content is not a JSON object")
    state = _State()
    services, files = doc.pop("services", None) or {}, doc.pop("files", None) or {}
    if not isinstance(services, dict) or not isinstance(files, dict):
        raise CorruptVaultError("vault content: services and files must be JSON objects")
    for name, raw in services.items():
        try:
            if isinstance(raw, dict) and "name" not in raw:
                raw = {**raw, "name": name}
            service = parse_stored_service(raw)
            if service.name != name:
                raise ServiceValidationError(f"name {service.name!r} differs from its key in the vault file")
            state.set_service(service)
        except ServiceValidationError as exc:
            log.warning(
                "service %r in the vault file cannot be read (%s): kept as stored and listed with this error "
                "until it is replaced or removed", name, exc,
            )  # fmt: skip
            state.unparsed_services[name] = raw
            state.unreadable_reasons[name] = str(exc)
    for name, raw in files.items():
        data_b64 = (raw.get("data") or "") if isinstance(raw, dict) else None
        mime_type = (raw.get("mime_type") or "application/octet-stream") if isinstance(raw, dict) else None
        if not isinstance(data_b64, str) or not isinstance(mime_type, str):
            raise CorruptVaultError(f"vault content: file {name!r} is not a {{name, mime_type, data}} object")
        try:
            base64.b64decode(data_b64, validate=True)  # checked once here, so a download cannot fail later
        except ValueError as exc:
            raise CorruptVaultError(f"vault content: file {name!r} data is not valid base64") from exc
        state.set_file(StoredFile(name, mime_type, data_b64, _b64_size(data_b64)))
    state.extras = doc
    return state


class VaultStore:
    """Holds the decrypted vault while unlocked; all writes go through ``_commit``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / VAULT_FILE
        self._key: KeyMaterial | None = None
        self._state = _State()
        self._write_lock = asyncio.Lock()
        # The audit log's hooks (audit/vault_link.py): ``save_sections`` fill top-level sections of
        # the plaintext at every save (its last-hash record; None leaves a section as it is);
        # ``key_listeners`` get the key material after an unlock, with the sections as read from
        # the file, and ``(None, {})`` on lock.
        self.save_sections: dict[str, Callable[[], Any]] = {}
        self.key_listeners: list[Callable[[KeyMaterial | None, dict[str, Any]], None]] = []

    # -- state ------------------------------------------------------------------------------
    @property
    def unlocked(self) -> bool:
        return self._key is not None

    @property
    def services(self) -> dict[str, Service]:
        self._require_unlocked()
        return self._state.services

    @property
    def unreadable(self) -> dict[str, tuple[Any, str]]:
        """Service entries of the vault file that cannot be read: name -> (entry as stored, reason)."""
        self._require_unlocked()
        state = self._state
        return {name: (state.unparsed_services[name], reason) for name, reason in state.unreadable_reasons.items()}

    @property
    def files(self) -> dict[str, StoredFile]:
        self._require_unlocked()
        return self._state.files

    def _require_unlocked(self) -> None:
        if self._key is None:
            raise VaultLockedError

    def exists(self) -> bool:
        return self.path.exists() or backup_path(self.path).exists()

    # -- unlock / lock / password ----------------------------------------------------------
    async def unlock(self, password: str) -> bool:
        """Open (or, with no file at all, create) the vault. Returns True when it was created.

        Raises ``fileformat.WrongPasswordError`` / ``VaultFormatError`` / ``CorruptVaultError``.
        Argon2 runs in a thread. Safe to call while unlocked: it then only checks the password.
        """
        async with self._write_lock:
            key, state, created, needs_save = await asyncio.to_thread(self._open_sync, password)
            if self._key is None:
                found = dict(state.extras)
                if needs_save:
                    await asyncio.to_thread(self._save, key, state)
                self._key, self._state = key, state
                for listener in self.key_listeners:
                    listener(key, found)
            return created

    def _open_sync(self, password: str) -> tuple[KeyMaterial, _State, bool, bool]:
        ensure_private_dir(self.data_dir)
        source = self.path if self.path.exists() else backup_path(self.path)
        if not source.exists():
            if len(password) < MIN_PASSWORD_LEN:
                raise PasswordTooShortError(f"password must be at least {MIN_PASSWORD_LEN} characters")
            return fileformat.new_key_material(password), _State(), True, True
        plaintext, key = fileformat.decrypt(source.read_bytes(), password)
        state = parse_plaintext(plaintext)
        # Legacy files get our format on first unlock; a vault opened from .bak is restored now.
        needs_save = key is None or source != self.path
        if key is None:
            key = fileformat.new_key_material(password)
        if source != self.path:
            log.warning("vault.enc was missing; restored from %s", source.name)
        return key, state, False, needs_save

    def lock(self) -> None:
        self._key = None
        self._state = _State()
        for listener in self.key_listeners:
            listener(None, {})

    async def save(self) -> None:
        """Write the vault again as it is, refreshing ``save_sections`` (nothing while locked)."""
        async with self._write_lock:
            if self._key is not None:
                await asyncio.to_thread(self._save, self._key, self._state)

    async def change_password(self, current: str, new: str) -> None:
        """Re-wrap the data key under a new password (the data key itself stays the same)."""
        if len(new) < MIN_PASSWORD_LEN:
            raise PasswordTooShortError(f"password must be at least {MIN_PASSWORD_LEN} characters")
        async with self._write_lock:
            self._require_unlocked()
            blob = await asyncio.to_thread(self.path.read_bytes)
            await asyncio.to_thread(fileformat.decrypt, blob, current)  # raises WrongPasswordError
            assert self._key is not None
            new_key = await asyncio.to_thread(fileformat.new_key_material, new, data_key=self._key.data_key)
            await asyncio.to_thread(self._save, new_key, self._state)
            self._key = new_key

    # -- mutations --------------------------------------------------------------------------
    async def put_service(self, name: str, build: Callable[[Service | None], Service]) -> Service:
        """Upsert: ``build`` receives the stored service ``name`` (or None) and returns the new one.

        It runs under the write lock, so read-modify-write (keeping pins and caches) is atomic.
        """
        holder: list[Service] = []

        def change(state: _State) -> None:
            service = build(state.services.get(name))
            state.set_service(service)
            holder.append(service)

        await self._commit(change)
        return holder[0]

    async def delete_service(self, name: str) -> None:
        await self._commit(lambda state: state.drop_service(name))

    async def put_file(self, stored: StoredFile) -> None:
        await self._commit(lambda state: state.set_file(stored))

    async def delete_file(self, name: str, check: Callable[[], None] | None = None) -> None:
        def change(state: _State) -> None:
            if check is not None:
                check()
            state.drop_file(name)

        await self._commit(change)

    def _save(self, key: KeyMaterial, state: _State) -> None:
        for name, section in self.save_sections.items():
            value = section()
            if value is not None:
                state.extras[name] = value
        atomic_write(self.path, key.encrypt_stream(state.plaintext_parts()))

    async def _commit(self, change: Callable[[_State], None]) -> None:
        async with self._write_lock:
            self._require_unlocked()
            key = self._key
            assert key is not None
            new_state = self._state.copy()
            change(new_state)
            await asyncio.to_thread(self._save, key, new_state)
            if self._key is key:  # not locked meanwhile
                self._state = new_state
