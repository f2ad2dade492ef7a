"""The fenced code blocks of a Markdown page, and which of them the docs test runs.

Conventions (docs/README-of-examples in docs/contributing-docs.md says the same for writers):

- ```` ```sh ````, ```` ```bash ````, ```` ```shell ```` and ```` ```python ```` blocks are run, in page
  order, unless the info string has the word ``norun`` (``\u0060\u0060\u0060sh norun``).
- ``exit=N`` in the info string: the block must end with exit status N (it then runs without ``set -e``).
- ``shows-secret``: the block deliberately prints a secret (an admin downloading a file); its output
  is not scanned for secrets (the server's logs still are).
- ```` ```json file=NAME ```` is written to ``NAME`` in the page's working directory before the next
  block runs; any other ```` ```json ```` block must be valid JSON (or JSON Lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RUN_LANGS = frozenset({"sh", "bash", "shell", "python"})
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    words: tuple[str, ...] = ()  # the info string after the language
    options: dict[str, str] = field(default_factory=dict)  # key=value words
    text: str = ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS and "norun" not in self.words

    @property
    def expected_exit(self) -> int:
        return int(self.options.get("exit", "0"))

    @property
    def file_name(self) -> str | None:
        return self.options.get("file") if self.lang == "json" else None


def parse_blocks(text: str, page: str) -> list[Block]:
    """Every fenced block of ``text``; an unclosed fence runs to the end of the page (as CommonMark)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        info = opening["info"].strip().split()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = lines[i].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            body.append(_dedent(lines[i], indent))
            i += 1
        i += 1
        lang = info[0].lower() if info else ""
        words = tuple(info[1:])
        options = dict(word.split("=", 1) for word in words if "=" in word)
        blocks.append(Block(page, start + 1, lang, words, options, "\n".join(body) + "\n"))
    return blocks


def _dedent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading spaces (the fence's own indentation), as CommonMark does."""
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, indent) :]


def page_blocks(path: Path, root: Path) -> list[Block]:
    return parse_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
