"""Keeping secrets out of what the caller sees: the per-service ``SecretSet`` and its scrubber."""

from .scrubber import REDACTED, Scrubber, StreamScrubber, secret_variants
from .secret_set import SecretSet

__all__ = ["REDACTED", "Scrubber", "SecretSet", "StreamScrubber", "secret_variants"]
