"""What an injector produces for one outgoing request."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credential:
    """Headers to set on the upstream request and the base URL to call (with any URL token in it).

    ``secrets`` lists every value that must never come back to the caller (the echo scrubber's input);
    ``basic_pairs`` holds (user, password) pairs whose base64 form is also a secret.
    """

    base_url: str
    headers: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = field(default=(), repr=False)
    basic_pairs: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.headers)
        return f"Credential(headers=[{names}])"
