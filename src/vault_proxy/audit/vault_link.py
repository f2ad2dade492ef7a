"""``AuditVault``: what ties the audit log to the vault (design notes in ``__init__.py``).

* On unlock the log gets its HMAC key (HKDF of the data key); on lock it loses it.
* Every vault save writes the log's last-hash record (``{"seq", "sha256"}`` of its last line) into
  the vault plaintext; ``checkpoint()`` saves for that alone (on lock and shutdown, and every
  ``interval`` seconds while unlocked when lines were written since).
* On the first unlock after a start, the record found in the vault goes into the log as an
  ``audit.anchor`` line (and a warning to the server log when the log is visibly behind it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .chain import ANCHOR_ACTION, RECORD_SECTION, derive_key, is_hex64
from .log import AuditLog

if TYPE_CHECKING:
    from ..vault.fileformat import KeyMaterial
    from ..vault.store import VaultStore

log = logging.getLogger("vault_proxy.audit")
CHECKPOINT_SECONDS = 10.0


class AuditVault:
    def __init__(self, audit: AuditLog, store: VaultStore, interval: float = CHECKPOINT_SECONDS) -> None:
        self.audit = audit
        self.store = store
        self.interval = interval
        self._recorded_seq = -1
        self._anchored = False
        self._task: asyncio.Task[None] | None = None
        store.save_sections[RECORD_SECTION] = self._record
        store.key_listeners.append(self._key_changed)

    def _record(self) -> dict[str, Any] | None:
        """The last-hash record; called by every vault save (in its worker thread)."""
        mark = self.audit.sync_mark()
        if mark is None:
            return None
        self._recorded_seq = mark[0]
        return {"seq": mark[0], "sha256": mark[1]}

    def _key_changed(self, material: KeyMaterial | None, found: dict[str, Any]) -> None:
        if material is None:
            self.audit.set_key(None)
            return
        self.audit.set_key(derive_key(material.data_key))
        if not self._anchored:
            self._anchored = True
            self._anchor(found.get(RECORD_SECTION))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _anchor(self, record: object) -> None:
        if self.audit.path is None or not isinstance(record, dict):
            return
        seq, sha = record.get("seq"), record.get("sha256")
        if type(seq) is not int or not is_hex64(sha):
            return
        start_seq, start_link = self.audit.start
        if seq > start_seq or (seq == start_seq and sha != start_link):
            log.warning(
                "audit log %s ends at line %d but the vault's last-hash record is line %d: lines were cut from "
                "the log (or it was replaced) while the server was down; 'vault-cli audit verify' shows where",
                self.audit.path, start_seq, seq,
            )  # fmt: skip
        self.audit.record(ANCHOR_ACTION, record_seq=seq, record_sha256=sha, start_seq=start_seq)

    async def checkpoint(self) -> None:
        """Save the vault if lines were written since the last record (no-op while locked)."""
        if not self.store.unlocked or self.audit.seq == self._recorded_seq or self.audit.path is None:
            return
        try:
            # Shielded: a cancelled caller (shutdown) must not release the store's write lock mid-save.
            await asyncio.shield(self.store.save())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed record must not fail a lock or a shutdown
            log.warning("could not save the audit log's last-hash record in the vault: %s", exc)

    def stop(self) -> None:
        """Stop the periodic checkpoints (the app's loop cancels them at exit anyway)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.checkpoint()
