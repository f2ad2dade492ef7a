"""Checking a chained audit log: the first edited, inserted, removed or moved line (format: ``chain.py``).

``verify_files(log_files(path), mac=..., record=...)`` reads the rotated files oldest first and the
live file last, as one chain. A line is accepted when it parses, its ``hash`` matches (an HMAC only
with the key), its ``prev`` is the SHA-256 of the accepted line before it and its ``seq`` is one
more. The first line that is not accepted is classified:

* ``inserted`` — the line after it links to the line before it (or it links back past lines that
  do not belong), or it is a copy of an earlier line;
* ``edited``   — its hash does not match, it is not a chained line, or (without the key) the next
  line no longer matches it;
* ``removed``  — ``seq`` jumps: lines are missing before it; also a log that ends before the vault's
  last-hash record, one whose record (or an ``audit.anchor`` line's) names a different line, or a
  log whose start is missing (older files deleted: ``allow_missing_start``);
* ``moved``    — an intact line out of order.

Lines before the first chained line (a log written before chaining existed) are counted, not judged.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from .chain import ANCHOR_ACTION, GENESIS, Chained, LineMac, is_hex64, link_hash, parse
from .log import rotated_numbers, rotated_path

_RECENT = 4096  # accepted lines remembered for "links back to an earlier line"
_AHEAD = 64  # lines looked at past a bad one to tell an insertion or a move from an edit or a removal


def log_files(path: Path) -> list[Path]:
    """``path`` and its rotated files, oldest first (``.N`` … ``.1``, then ``path``)."""
    older = [rotated_path(path, number) for number in reversed(rotated_numbers(path))]
    return [*older, path] if path.exists() or not older else older


@dataclass(frozen=True)
class Problem:
    line: int  # position across all files, 1-based
    kind: str  # edited | inserted | removed | moved
    detail: str
    where: str = ""  # "audit.jsonl.1 line 12" when more than one file is read

    def __str__(self) -> str:
        where = f" [{self.where}]" if self.where else ""
        return f"line {self.line}: {self.kind} ({self.detail}){where}"


@dataclass
class Report:
    files: list[str] = field(default_factory=list)
    lines: int = 0
    unchained: int = 0  # leading lines from before chaining
    keyed: int = 0
    unkeyed: int = 0
    unsealed: int = 0  # lines after the last keyed line (written while locked; no HMAC covers them)
    macs_checked: bool = False
    first_seq: int | None = None
    last_seq: int = 0
    record: tuple[int, str] | None = None  # the vault's last-hash record that was checked
    notes: list[str] = field(default_factory=list)
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class _Line:
    no: int
    where: str
    raw: bytes
    chained: Chained | None
    link: str


def _read(paths: Iterable[Path], name_files: bool) -> Iterator[_Line]:
    number = 0
    for path in paths:
        with open(path, "rb") as handle:
            for file_no, raw in enumerate(handle, 1):
                number += 1
                raw = raw[:-1] if raw.endswith(b"\n") else raw
                where = f"{path.name} line {file_no}" if name_files else ""
                yield _Line(number, where, raw, parse(raw), link_hash(raw))


def _anchor_seqs(paths: Iterable[Path]) -> set[int]:
    """First pass: the ``seq`` of every line an ``audit.anchor`` line vouches for."""
    needle = f'"action":"{ANCHOR_ACTION}"'.encode()
    seqs = set()
    for path in paths:
        with open(path, "rb") as handle:
            for raw in handle:
                if needle in raw:
                    seq = _json_field(raw, "record_seq")
                    if type(seq) is int:
                        seqs.add(seq)
    return seqs


def _json_field(raw: bytes, name: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get(name) if isinstance(value, dict) else None


class _Walker:
    def __init__(self, mac: LineMac | None, report: Report, needed: set[int], allow_missing_start: bool) -> None:
        self.mac = mac
        self.report = report
        self.needed = needed
        self.allow_missing_start = allow_missing_start
        self.tip: _Line | None = None  # last accepted chained line
        self.before: _Line | None = None  # the raw line before the first chained one
        self.recent: dict[str, tuple[int, int]] = {}  # link -> (seq, line number) of accepted lines
        self.seen: dict[int, tuple[str, int]] = {}  # needed seq -> (link, line number)

    def _follows_tip(self, line: _Line) -> bool:
        if line.chained is None or self.tip is None:
            return False
        tip = self.tip.chained
        assert tip is not None
        return line.chained.prev == self.tip.link and line.chained.seq == tip.seq + 1

    def _rejoin(self, ahead: Iterable[_Line]) -> _Line | None:
        """The first line ahead that follows the last accepted line (the chain goes on there)."""
        return next((line for line in ahead if self._follows_tip(line)), None)

    def _hash_problem(self, line: _Line) -> str | None:
        chained = line.chained
        if chained is None:
            return "not a complete chained audit line (a write cut short by a crash looks like this too)"
        ok = chained.hash_ok(self.mac)
        if ok is None:
            return None
        if not ok:
            kind = "HMAC" if chained.keyed else "SHA-256"
            return f"its {kind} hash does not match its content"
        return None

    def step(self, line: _Line, ahead: Iterable[_Line]) -> Problem | None:
        if self.tip is None:
            return self._first(line)
        damage = self._hash_problem(line)
        if damage is not None:
            rejoin = self._rejoin(ahead)
            if rejoin is not None:
                return self._inserted(line, rejoin)
            return Problem(line.no, "edited", damage, line.where)
        if self._follows_tip(line):
            return self._accept(line)
        return self._misplaced(line, ahead)

    def _first(self, line: _Line) -> Problem | None:
        chained = line.chained
        if chained is None:
            self.report.unchained += 1
            self.before = line
            return None
        damage = self._hash_problem(line)
        if damage is not None:
            return Problem(line.no, "edited", damage, line.where)
        expected = self.before.link if self.before is not None else GENESIS
        if chained.prev == expected and (chained.seq == 1 or self.before is not None):
            return self._accept(line)
        if self.before is not None:
            return Problem(line.no, "removed", "it does not link to the line before it", line.where)
        if not self.allow_missing_start:
            detail = f"the log starts at seq {chained.seq}: earlier lines or rotated files are missing"
            return Problem(line.no, "removed", detail, line.where)
        self.report.notes.append(f"the log starts at seq {chained.seq} (earlier files not checked)")
        return self._accept(line)

    def _accept(self, line: _Line) -> Problem | None:
        chained = line.chained
        assert chained is not None
        report = self.report
        if report.first_seq is None:
            report.first_seq = chained.seq
        report.last_seq = chained.seq
        if chained.keyed:
            report.keyed += 1
            report.unsealed = 0
        else:
            report.unkeyed += 1
            report.unsealed += 1
        self.tip = line
        self.recent[line.link] = (chained.seq, line.no)
        if len(self.recent) > _RECENT:
            del self.recent[next(iter(self.recent))]
        if chained.seq in self.needed:
            self.seen[chained.seq] = (line.link, line.no)
        if chained.fields.get("action") == ANCHOR_ACTION:
            return self._check_anchor(line, chained)
        return None

    def _inserted(self, line: _Line, rejoin: _Line) -> Problem:
        assert self.tip is not None
        count = rejoin.no - line.no
        detail = f"line {rejoin.no} links to line {self.tip.no}: the {count} line(s) in between do not belong"
        return Problem(line.no, "inserted", detail, line.where)

    def _misplaced(self, line: _Line, ahead: Iterable[_Line]) -> Problem:
        """An intact line that does not follow the last accepted one."""
        chained, tip = line.chained, self.tip
        assert chained is not None and tip is not None and tip.chained is not None
        expected = tip.chained.seq + 1
        if line.link in self.recent:
            copied = self.recent[line.link][1]
            return Problem(line.no, "inserted", f"a copy of line {copied}", line.where)
        rejoin = self._rejoin(ahead)
        if rejoin is not None:  # the chain goes on after it: this line does not belong here
            if chained.seq > expected:
                return Problem(line.no, "moved", f"seq {chained.seq} comes before seq {expected}", line.where)
            return self._inserted(line, rejoin)
        earlier = self.recent.get(chained.prev)
        if earlier is not None and earlier[0] < tip.chained.seq and chained.seq == earlier[0] + 1:
            first = earlier[1] + 1  # lines accepted after ``earlier`` were a forged branch
            detail = f"line {line.no} links back to line {earlier[1]}: the lines in between do not belong"
            return Problem(first, "inserted", detail)
        if chained.seq < expected:
            return Problem(line.no, "moved", f"seq {chained.seq} comes after seq {tip.chained.seq}", line.where)
        if chained.seq > expected:
            missing = chained.seq - expected
            span = f"seq {expected}" if missing == 1 else f"seq {expected}-{chained.seq - 1}"
            return Problem(line.no, "removed", f"{missing} line(s) missing before it ({span})", line.where)
        return Problem(tip.no, "edited", f"line {line.no} no longer matches it", tip.where)

    def _check_anchor(self, line: _Line, chained: Chained) -> Problem | None:
        """An ``audit.anchor`` line: the vault's record at the first unlock after a start must be in the log."""
        seq, sha = chained.fields.get("record_seq"), chained.fields.get("record_sha256")
        if type(seq) is not int or not is_hex64(sha):
            return None
        what = "the vault's last-hash record found at this unlock"
        return self._check_record((seq, sha), line, chained.seq - 1, what)

    def _check_record(self, record: tuple[int, str], at: _Line | None, reached: int, what: str) -> Problem | None:
        """Line ``seq`` of the log must be the one the record names (``at``: where to report, None: the end)."""
        seq, sha = record
        if seq < (self.report.first_seq or 1):
            self.report.notes.append(f"{what} (seq {seq}) is older than the checked lines")
            return None
        no, where = (at.no, at.where) if at is not None else (self.report.lines + 1, "")
        found = self.seen.get(seq)
        if found is None or seq > reached:
            detail = f"{what} is seq {seq}, but the log only reached seq {reached}: its tail was cut"
            return Problem(no, "removed", detail, where)
        if found[0] != sha:
            detail = f"{what} (seq {seq}) is not line {found[1]}: the log was cut at or before it and continued"
            return Problem(no if at is not None else found[1], "removed", detail, where)
        return None

    def finish(self, record: tuple[int, str] | None) -> Problem | None:
        if record is None:
            return None
        self.report.record = record
        return self._check_record(record, None, self.report.last_seq, "the vault's last-hash record")


def verify_files(
    paths: list[Path],
    *,
    mac: LineMac | None = None,
    record: object = None,
    allow_missing_start: bool = False,
) -> Report:
    """Check the chain over ``paths`` (oldest first). ``record``: the vault's ``"audit"`` section."""
    report = Report(files=[path.name for path in paths], macs_checked=mac is not None)
    last_hash = _record(record)
    needed = _anchor_seqs(paths) | ({last_hash[0]} if last_hash else set())
    walker = _Walker(mac, report, needed, allow_missing_start)
    lines = _read(paths, name_files=len(paths) > 1)
    window: deque[_Line] = deque(islice(lines, _AHEAD + 1))
    while window:
        current = window.popleft()
        window.extend(islice(lines, 1))
        report.lines += 1
        report.problem = walker.step(current, window)
        if report.problem is not None:
            return report
    report.problem = walker.finish(last_hash)
    return report


def _record(record: object) -> tuple[int, str] | None:
    if not isinstance(record, dict):
        return None
    seq, sha = record.get("seq"), record.get("sha256")
    if type(seq) is not int or seq < 1 or not is_hex64(sha):
        return None
    return seq, sha
