"""The audit log: one JSON line per request, chained so that edits and truncation show (SPEC §16).

Never a credential, query string or body. Modules:

* ``log.py``        the writer (``AuditLog``), on every request's path: format, chain, append, rotate.
* ``chain.py``      the line format and the key derivation, shared with the verifier.
* ``verify.py``     ``verify_files``: finds the first edited, inserted, removed or moved line.
* ``vault_link.py`` ``AuditVault``: the key while unlocked, the last-hash record in the vault.

Design (docs/api.md, "Audit log", says the same for operators):

* **Key.** ``hash`` = HMAC-SHA256 (of the SHA-256 of the line's body) under HKDF-SHA256(vault data
  key, info "vault-proxy audit log HMAC v1"). The data key never changes (``passwd`` re-wraps it), so
  neither does the audit key. It exists only while the vault is unlocked and is dropped on lock, like
  every other key.
* **Locked lines.** Lines written while locked (failed unlocks, calls with revoked tokens) are still
  chained: ``"mac":false`` and a plain SHA-256 ``hash``. Every keyed line's HMAC covers its ``prev``,
  the SHA-256 of the line before, which covers that line's ``prev`` … so the first keyed line after
  them (the next unlock) seals them; and the server chains from memory, not from the file, so an edit
  made on disk meanwhile breaks that link. What no key can protect is an unkeyed tail that is edited
  while the server is down and never followed by a keyed line. (Keeping the key in memory after lock
  would close that window but break "lock drops every key"; buffering lines until unlock would lose
  them in a crash.)
* **Verification** is offline (``vault-cli audit verify``): with the master password the CLI unwraps
  the data key from ``vault.enc`` with the vault's own file-format code and checks every HMAC and the
  last-hash record — which still works when the server host is compromised. Without it (``--no-key``)
  it checks the links, ``seq`` and the unkeyed hashes, which catches any edit that does not rewrite
  the rest of the file. No API endpoint: it would ask the possibly compromised server to vouch for itself.
* **Last-hash record.** ``{"seq", "sha256"}`` of the last line, in the vault plaintext under
  ``"audit"``; refreshed at every vault save, on lock and shutdown, and every 10 s while unlocked and
  lines were written (a save costs 1.4–16 ms, a chained line 2.9 µs: one save per line is out). The
  audit file is fsynced before the record is taken. On the first unlock after a start the record found
  in the vault is written to the log as an ``audit.anchor`` line, so a tail cut while the server was
  down is caught even after new lines reuse its numbers. Undetectable: cutting the lines written after
  the last record — at most 10 s while unlocked, and everything since the last lock while locked — and
  only if the server is not running on (its next line would not link).
* **Rotation** by size (100 MiB by default): ``audit.jsonl`` → ``audit.jsonl.1`` (older files shift up,
  none deleted); the new file's first line chains to the old file's last line.
* **Restart.** The writer reads the end of the existing log (or of ``.1`` if the log is empty) and
  continues its ``seq`` and ``prev``.
"""

from __future__ import annotations

from .log import AuditLog, audit_max_bytes, milliseconds

__all__ = ["AuditLog", "audit_max_bytes", "milliseconds"]
