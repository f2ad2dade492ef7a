"""The world the documentation's examples run in: local peers behind the names the docs use.

The docs are written for a real user: ``https://api.example.com``, ``"imap_host": "imap.example.com"``,
``~/.ssh/id_ed25519``. Before a block runs, those are rewritten to the local peers started here
(docs/contributing-docs.md lists the names). The rewriting is plain text: URL prefixes, and the
values of the service fields that name a peer (host, port, user, password, database, OAuth client).
A peer starts only when a page needs it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dovecot_server import DovecotServer
from oauth_provider import OAuthProvider
from postgres_server import PostgresServer
from redis_server import RedisServer
from smtp_server import SmtpServer
from sshd import Sshd
from upstream import Upstream

# URL prefixes -> what they become ({up} the HTTPS echo upstream, {oauth} the OAuth provider).
URL_PREFIXES = {
    "https://api.example.com": "{up}",
    "https://api.openai.com": "{up}",
    "https://api.anthropic.com": "{up}",
    "https://oauth.example.com": "{oauth}",
    "https://oauth2.googleapis.com": "{oauth}",
    "https://www.googleapis.com": "{oauth}/api",
    "https://gmail.googleapis.com": "{oauth}/api",
    "https://sheets.googleapis.com": "{oauth}/api",
}
# Service fields that say which peer a page needs.
PEER_FIELDS = {
    "ssh": "ssh_host",
    "imap": "imap_host",
    "smtp": "smtp_host",
    "redis": "redis_host",
    "postgres": "postgres_host",
    "oauth": "token_url",
}
# Values that are secrets wherever they appear in a page's JSON (registered for the leak scan).
SECRET_FIELDS = re.compile(
    r'"(token|header_value|password|client_secret|refresh_token|access_token|ssh_key_passphrase|'
    r'(?:imap|smtp|redis|postgres)_password)"\s*:\s*"([^"]{8,})"'
)
FILES_PROVIDED = ("client_secret.json", "service-account.json")


def _field(text: str, name: str, value: Callable[[str], str | int]) -> str:
    """Replace the value of every ``"name": <string or number>`` in ``text``."""

    def swap(match: re.Match[str]) -> str:
        raw = match.group(2)
        old = raw[1:-1] if raw.startswith('"') else raw
        new = value(old)
        return f'"{name}"{match.group(1)}{json.dumps(new)}'

    return re.sub(rf'"{name}"(\s*:\s*)("[^"]*"|\d+)', swap, text)


class DocsWorld:
    """Module-wide: the echo upstream (its CA signs every peer's certificate) and peers on demand."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="vp-docs-", dir="/tmp"))
        self.upstream = Upstream(self.workdir / "upstream")
        self.upstream.echo_unknown = True
        self.upstream.start()
        self.ca_path = self.upstream.ca_path
        self._peers: dict[str, Any] = {}
        self._stops: list[Callable[[], object]] = [self.upstream.stop]

    def close(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- peers ------------------------------------------------------------------------------------

    def peer(self, kind: str) -> Any:
        if kind not in self._peers:
            self._peers[kind] = self._start(kind)
        return self._peers[kind]

    def _start(self, kind: str) -> Any:
        ca, base = self.upstream.ca, self.workdir / kind
        peer: Any
        if kind == "ssh":
            peer = Sshd(base).start()
        elif kind == "imap":
            peer = DovecotServer(ca).start()
        elif kind == "smtp":
            peer = SmtpServer(base, ca).start()
        elif kind == "redis":
            peer = RedisServer(base, tls_ca=ca).start()
        elif kind == "postgres":
            peer = PostgresServer(ca).start()
        elif kind == "oauth":
            peer = OAuthProvider(ca, base).start()
            peer.docs_client = peer.new_client()
            peer.docs_web_client = peer.new_web_client([], kind="installed")
            peer.docs_account = peer.new_service_account()
        else:
            raise ValueError(kind)
        self._stops.append(peer.stop)
        return peer

    def needed(self, page_text: str) -> list[str]:
        kinds = [kind for kind, name in PEER_FIELDS.items() if f'"{name}"' in page_text]
        if "oauth" not in kinds and any(
            prefix in page_text for prefix, target in URL_PREFIXES.items() if target.startswith("{oauth}")
        ):
            kinds.append("oauth")
        if "oauth" not in kinds and any(name in page_text for name in FILES_PROVIDED):
            kinds.append("oauth")
        if "ssh" not in kinds and "id_ed25519" in page_text:
            kinds.append("ssh")
        return kinds

    # -- the page's files and secrets --------------------------------------------------------------

    def prepare(self, kinds: list[str], workdir: Path, home: Path) -> list[str]:
        """Put the files a reader would already have in place; return the secrets they hold."""
        secrets: list[str] = []
        if "ssh" in kinds:
            sshd = self.peer("ssh")
            ssh_dir = home / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            for target in (ssh_dir / "id_ed25519", workdir / "id_ed25519"):
                target.write_text(sshd.client_key_text)
                target.chmod(0o600)
                target.with_suffix(".pub").write_text(sshd.client_pub + "\n")
            secrets += [line for line in sshd.client_key_text.splitlines() if len(line) >= 40]
        if "oauth" in kinds:
            oauth = self.peer("oauth")
            web_client, web_json = oauth.docs_web_client
            (workdir / "client_secret.json").write_text(json.dumps(web_json, indent=2))
            account = oauth.docs_account.key_json
            (workdir / "service-account.json").write_text(json.dumps(account, indent=2))
            secrets += [web_client.client_secret, oauth.docs_client.client_secret, oauth.docs_client.refresh_token]
            secrets += [line for line in account["private_key"].splitlines() if len(line) >= 40]
        return secrets

    def peer_secrets(self, kinds: list[str]) -> list[str]:
        return [self.peer(kind).password for kind in kinds if kind in ("imap", "smtp", "redis", "postgres")]

    # -- rewriting ---------------------------------------------------------------------------------

    def rewrite(self, text: str, kinds: list[str]) -> str:
        """The block as it runs here: documented names replaced by the local peers."""
        targets = {"up": self.upstream.url}
        if "oauth" in kinds:
            targets["oauth"] = self.peer("oauth").url
        for prefix, target in URL_PREFIXES.items():
            key = target[1 : target.index("}")]
            if key in targets:
                text = text.replace(prefix, target.replace("{" + key + "}", targets[key]))
        for kind in kinds:
            text = getattr(self, f"_rewrite_{kind}")(text, self.peer(kind))
        return text

    @staticmethod
    def _rewrite_ssh(text: str, peer: Sshd) -> str:
        text = _field(text, "ssh_host", lambda _: "127.0.0.1")
        text = _field(text, "ssh_port", lambda _: peer.port)
        text = _field(text, "ssh_user", lambda _: peer.user)
        return text.replace("~/.ssh/id_ed25519", "$HOME/.ssh/id_ed25519")

    @staticmethod
    def _rewrite_imap(text: str, peer: DovecotServer) -> str:
        text = _field(text, "imap_host", lambda _: peer.host)
        text = _field(text, "imap_port", lambda old: peer.port if old == "143" else peer.tls_port)
        text = _field(text, "imap_user", lambda _: peer.user)
        return _field(text, "imap_password", lambda _: peer.password)

    @staticmethod
    def _rewrite_smtp(text: str, peer: SmtpServer) -> str:
        text = _field(text, "smtp_host", lambda _: peer.host)
        text = _field(text, "smtp_port", lambda old: peer.tls_port if old == "465" else peer.port)
        text = _field(text, "smtp_user", lambda _: peer.user)
        return _field(text, "smtp_password", lambda _: peer.password)

    @staticmethod
    def _rewrite_redis(text: str, peer: RedisServer) -> str:
        text = _field(text, "redis_host", lambda _: peer.host)
        text = _field(text, "redis_port", lambda old: peer.tls_port if old == "6380" else peer.port)
        text = _field(text, "redis_username", lambda _: "default")
        return _field(text, "redis_password", lambda _: peer.password)

    @staticmethod
    def _rewrite_postgres(text: str, peer: PostgresServer) -> str:
        text = _field(text, "postgres_host", lambda _: peer.host)
        text = _field(text, "postgres_port", lambda _: peer.port)
        text = _field(text, "postgres_user", lambda _: peer.user)
        text = _field(text, "postgres_db", lambda _: peer.db)
        return _field(text, "postgres_password", lambda _: peer.password)

    @staticmethod
    def _rewrite_oauth(text: str, peer: OAuthProvider) -> str:
        client = peer.docs_client
        text = _field(text, "token_url", lambda _: peer.token_url)
        text = _field(text, "client_id", lambda _: client.client_id)
        text = _field(text, "client_secret", lambda _: client.client_secret)
        return _field(text, "refresh_token", lambda _: client.refresh_token)

    # -- the browser of the OAuth consent flow -------------------------------------------------------

    def approve_consents(self, output: str, get: Callable[[str], object]) -> int:
        """Approve every consent URL of our provider that a block printed, as the user's browser would."""
        oauth = self._peers.get("oauth")
        if oauth is None:
            return 0
        urls = re.findall(re.escape(oauth.authorize_url) + r"\?\S+", output)
        for url in urls:
            get(oauth.authorize(url))
        return len(urls)


def documented_secrets(text: str) -> Iterator[str]:
    """Secret-looking field values written in the page itself (after rewriting)."""
    for match in SECRET_FIELDS.finditer(text):
        yield match.group(2)
