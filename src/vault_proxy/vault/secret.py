"""The secret field type: masked in repr/str, the real value only in the stored JSON."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PlainSerializer, SecretStr

# Stored form is the plain string (the vault file is encrypted); everything else sees '**********'.
Secret = Annotated[SecretStr, PlainSerializer(lambda value: value.get_secret_value(), return_type=str)]
# A credential that must be present and non-empty; an empty one is reported like a missing one.
RequiredSecret = Annotated[Secret, Field(min_length=1)]


def reveal(value: SecretStr | None) -> str:
    """The plaintext of an optional secret ('' when unset)."""
    return value.get_secret_value() if value is not None else ""
