"""The docs test's block parser: which fenced blocks run, with what options, and their exact text."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from docs_blocks import parse_blocks  # noqa: E402

PAGE = """# Title

```sh
vault-cli health
```

```python
with open("x") as f:
    print(f.read())
```

  ```sh exit=1 shows-secret
  vault-cli lock
    indented more
  ```

~~~sh norun
make run
~~~

```json file=svc.json
{"name": "a"}
```

````text
```sh
not a block of its own
```
````
"""


def test_blocks_languages_options_and_lines() -> None:
    blocks = parse_blocks(PAGE, "page.md")
    assert [(b.lang, b.line) for b in blocks] == [
        ("sh", 3), ("python", 7), ("sh", 12), ("sh", 17), ("json", 21), ("text", 25)
    ]  # fmt: skip
    assert [b.runs for b in blocks] == [True, True, True, False, False, False]
    assert blocks[2].expected_exit == 1 and "shows-secret" in blocks[2].words
    assert blocks[0].expected_exit == 0
    assert blocks[4].file_name == "svc.json" and blocks[0].file_name is None


def test_block_text_keeps_inner_indentation() -> None:
    blocks = parse_blocks(PAGE, "page.md")
    assert blocks[1].text == 'with open("x") as f:\n    print(f.read())\n'
    assert blocks[2].text == "vault-cli lock\n  indented more\n"
    assert blocks[5].text == "```sh\nnot a block of its own\n```\n"


def test_unclosed_fence_runs_to_the_end() -> None:
    blocks = parse_blocks("```sh\necho a\necho b", "p.md")
    assert len(blocks) == 1 and blocks[0].text == "echo a\necho b\n"
