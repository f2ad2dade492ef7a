"""Parse durations like ``90m``, ``2h``, ``7d``, ``1h30m``, ``45s`` (Go style, plus days)."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError with a readable message when it is not a duration."""
    text = text.strip()
    if not text or _PART.sub("", text):
        raise ValueError(f"invalid duration {text!r} (examples: 45s, 90m, 2h, 7d, 1h30m)")
    total = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return total
