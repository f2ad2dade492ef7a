"""Service models: one pydantic model per auth type, in a union discriminated on ``type``.

A model holds everything the vault stores about a service, secrets included; ``service_info``
(see ``info.py``) is the only view that leaves the server.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, field_validator, model_validator

from .secret import RequiredSecret, Secret

NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]*")
MAX_NAME_LEN = 128
FORBIDDEN_HEADER_NAMES = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
)
HTTP_AUTH_TYPES = frozenset({"bearer", "header", "basic", "url", "oauth2_client", "service_account"})
_HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def validate_service_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("service name is required")
    if len(name) > MAX_NAME_LEN or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid service name {json.dumps(name[:140])}: 1-128 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def normalise_expiry(value: Any) -> Any:
    """``expires_at`` as stored: an RFC 3339 string. Unix seconds (what the Go tool writes) become one."""
    if isinstance(value, bool):
        raise ValueError("expires_at must be unix seconds or an RFC 3339 time")
    if isinstance(value, int | float):
        try:
            if not math.isfinite(value):
                raise ValueError
            moment = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("expires_at must be unix seconds or an RFC 3339 time") from None
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return value


class _Auth(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    def secret_values(self) -> list[str]:
        """Every secret string this auth holds (for echo scrubbing and leak checks)."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        return values


class BearerAuth(_Auth):
    type: Literal["bearer"]
    token: RequiredSecret


class HeaderAuth(_Auth):
    type: Literal["header"]
    header_name: str
    header_value: RequiredSecret

    @field_validator("header_name")
    @classmethod
    def _check_header_name(cls, value: str) -> str:
        if not _HEADER_TOKEN.fullmatch(value):
            raise ValueError(f"header_name {value!r} is not a valid HTTP header name")
        if value.lower() in FORBIDDEN_HEADER_NAMES or value.lower().startswith("x-vault-"):
            raise ValueError(f"header_name {value!r} cannot be injected (reserved header)")
        return value


class BasicAuth(_Auth):
    type: Literal["basic"]
    username: str
    password: Secret


class UrlAuth(_Auth):
    type: Literal["url"]
    token: RequiredSecret


class OAuth2ClientAuth(_Auth):
    type: Literal["oauth2_client"]
    client_id: str = ""
    client_secret: Secret | None = None
    token_url: str = ""
    refresh_token: Secret | None = None
    client_secret_file: str = ""
    token_file: str = ""
    scopes: list[str] = Field(default_factory=list)
    access_token: Secret | None = None
    expires_at: str = ""

    @field_validator("expires_at", mode="before")
    @classmethod
    def _check_expiry(cls, value: Any) -> Any:
        return normalise_expiry(value)

    @model_validator(mode="after")
    def _check_source(self) -> OAuth2ClientAuth:
        if self.client_secret_file or self.token_file:
            if not (self.client_secret_file and self.token_file):
                raise ValueError("oauth2_client auth requires both client_secret_file and token_file")
            return self
        missing = [
            name for name in ("client_id", "client_secret", "token_url", "refresh_token") if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"oauth2_client auth requires {', '.join(missing)} (or client_secret_file and token_file)")
        _check_http_url(self.token_url, "token_url")
        return self


class ServiceAccountAuth(_Auth):
    type: Literal["service_account"]
    file_ref: str
    sa_scopes: list[str] = Field(default_factory=list)
    sa_token_url: str = ""
    sa_subject: str = ""
    access_token: Secret | None = None
    expires_at: str = ""

    @field_validator("expires_at", mode="before")
    @classmethod
    def _check_expiry(cls, value: Any) -> Any:
        return normalise_expiry(value)

    @field_validator("sa_token_url")
    @classmethod
    def _check_token_url(cls, value: str) -> str:
        if value:
            _check_http_url(value, "sa_token_url")
        return value


class SshKeyAuth(_Auth):
    type: Literal["ssh_key"]
    ssh_host: str
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ssh_user: str
    ssh_key_file_ref: str
    ssh_key_passphrase: Secret | None = None
    ssh_host_key: str = ""
    ssh_allowed_commands: list[str] = Field(default_factory=list)
    ssh_allowed_paths: list[str] = Field(default_factory=list)

    @field_validator("ssh_host_key")
    @classmethod
    def _check_host_key(cls, value: str) -> str:
        value = value.strip()
        if value:
            from .fingerprint import parse_public_key

            parse_public_key(value)
        return value

    @field_validator("ssh_allowed_paths")
    @classmethod
    def _check_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"ssh_allowed_paths entry {path!r} must be an absolute path")
        return value


class ImapAuth(_Auth):
    type: Literal["imap"]
    imap_host: str
    imap_port: int = Field(default=0, ge=0, le=65535)
    imap_user: str
    imap_password: Secret
    imap_tls: Literal["implicit", "starttls", "none"] = "implicit"

    @model_validator(mode="after")
    def _default_port(self) -> ImapAuth:
        if not self.imap_port:
            self.imap_port = 993 if self.imap_tls == "implicit" else 143
        return self


class SmtpAuth(_Auth):
    type: Literal["smtp"]
    smtp_host: str
    smtp_port: int = Field(default=0, ge=0, le=65535)
    smtp_user: str
    smtp_password: Secret
    smtp_tls: Literal["implicit", "starttls", "none"] = "starttls"

    @model_validator(mode="after")
    def _default_port(self) -> SmtpAuth:
        if not self.smtp_port:
            self.smtp_port = {"implicit": 465, "starttls": 587, "none": 25}[self.smtp_tls]
        return self


# What a Redis session refuses unless ``redis_allowed_commands`` names it (sessions/redis_filter.py): commands
# that can reveal or change the stored credential, or turn the session into a replica or a monitor.
REDIS_REFUSED_COMMANDS = frozenset(
    {"CONFIG", "ACL", "MIGRATE", "REPLICAOF", "SLAVEOF", "MODULE", "DEBUG", "MONITOR", "SYNC", "PSYNC"}
)


class RedisAuth(_Auth):
    type: Literal["redis"]
    redis_host: str
    redis_port: int = Field(default=6379, ge=1, le=65535)
    redis_username: str = ""
    redis_password: Secret | None = None
    redis_db: int = Field(default=0, ge=0)
    redis_tls: bool = False
    # Commands a session refuses by default that this service allows (SPEC §13), upper-cased.
    redis_allowed_commands: list[str] = Field(default_factory=list)

    @field_validator("redis_allowed_commands")
    @classmethod
    def _check_allowed_commands(cls, value: list[str]) -> list[str]:
        names = []
        for name in value:
            if name.upper() not in REDIS_REFUSED_COMMANDS:
                raise ValueError(
                    f"redis_allowed_commands entry {name[:40]!r} is not refused by default; "
                    f"list only some of {', '.join(sorted(REDIS_REFUSED_COMMANDS))}"
                )
            names.append(name.upper())
        return sorted(set(names))


class PostgresAuth(_Auth):
    type: Literal["postgres"]
    postgres_host: str
    postgres_port: int = Field(default=5432, ge=1, le=65535)
    postgres_user: str
    postgres_password: Secret
    postgres_db: str
    postgres_tls: Literal["require", "prefer", "disable"] = "require"
    postgres_read_only: StrictBool = False  # sessions start read-only and refuse switching it off (SPEC §13)


Auth = Annotated[
    BearerAuth
    | HeaderAuth
    | BasicAuth
    | UrlAuth
    | OAuth2ClientAuth
    | ServiceAccountAuth
    | SshKeyAuth
    | ImapAuth
    | SmtpAuth
    | RedisAuth
    | PostgresAuth,
    Field(discriminator="type"),
]
AUTH_TYPES = (
    "bearer", "header", "basic", "url", "oauth2_client", "service_account",
    "ssh_key", "imap", "smtp", "redis", "postgres",
)  # fmt: skip
# Fields that name a stored file (``/files``) and so block that file's deletion.
FILE_REF_FIELDS = ("client_secret_file", "token_file", "file_ref", "ssh_key_file_ref")


class Service(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    base_url: str = ""
    auth: Auth
    tls_skip_verify: bool = False
    session_cookies: bool = False
    redact_responses: bool = True
    max_request_mb: int | None = Field(default=None, ge=1, le=4096)

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> str:
        return validate_service_name(value)

    @model_validator(mode="after")
    def _check_base_url(self) -> Service:
        kind = self.auth.type
        if kind not in HTTP_AUTH_TYPES:
            return self
        if not self.base_url:
            raise ValueError(f"base_url is required for {kind} auth")
        _check_http_url(self.base_url.replace("{token}", "TOKEN"), "base_url")
        if kind == "url" and "{token}" not in self.base_url:
            raise ValueError("url auth requires base_url to contain {token}")
        return self

    def file_refs(self) -> list[str]:
        return [ref for field in FILE_REF_FIELDS if (ref := getattr(self.auth, field, ""))]

    def secret_values(self) -> list[str]:
        return self.auth.secret_values()

    def stored_dict(self) -> dict[str, Any]:
        """The JSON-ready form kept in the vault file (secrets included, defaults dropped)."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["auth"]["type"] = self.auth.type  # a default-valued discriminator must stay
        data["name"] = self.name
        return data


_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _check_http_url(url: str, field: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http:// or https:// URL with a host")
    host = parts.hostname
    if all(_NUMERIC_LABEL.fullmatch(label) for label in host.split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{field} host {host!r} is not a canonical IPv4 address (write it as a.b.c.d)") from None
