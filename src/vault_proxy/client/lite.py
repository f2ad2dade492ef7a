"""A blocking client on the standard library's ``http.client``, for the CLI.

Agents call ``vault-cli`` in loops, so its start-up matters: httpx and its dependencies take ~90 ms to
import, ``http.client`` a few. This client sends the same :mod:`~vault_proxy.client.calls` and returns the
same results and errors as :class:`~vault_proxy.VaultClient`; calls it cannot make itself (multipart
uploads) and the proxy go through a full ``VaultClient``, created on first need (:meth:`full`).
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from vault_proxy import __version__
from vault_proxy.client import calls
from vault_proxy.client.addr import VaultAddress, parse_addr
from vault_proxy.client.api import SyncApi
from vault_proxy.client.errors import VaultConnectionError, VaultError
from vault_proxy.client.session import resolve_token

if TYPE_CHECKING:
    import ssl

    from vault_proxy.client.sync import VaultClient

USER_AGENT = f"vault-proxy-python/{__version__}"
CONNECT_TIMEOUT = 10.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(min(CONNECT_TIMEOUT, self.timeout or CONNECT_TIMEOUT))
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        sock.settimeout(self.timeout)
        self.sock = sock


class LiteClient(SyncApi):
    """Same constructor arguments as :class:`~vault_proxy.VaultClient` (``verify`` for https)."""

    def __init__(
        self,
        addr: str | None = None,
        token: str | None = None,
        timeout: float | None = 60.0,
        allow_insecure: bool = False,
        *,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self._args = (addr, token, timeout, allow_insecure, verify)
        self._address: VaultAddress = parse_addr(addr, allow_insecure=allow_insecure)
        self.token: str | None = resolve_token(token)
        self._timeout = timeout
        self._verify = verify
        self._connection: http.client.HTTPConnection | None = None
        self._full: VaultClient | None = None

    @property
    def addr(self) -> str:
        """The vault address in use (for messages)."""
        return self._address.display

    def __repr__(self) -> str:  # never shows the token
        return f"LiteClient(addr={self.addr!r})"

    def __enter__(self) -> LiteClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connection (and the full client, if one was made)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._full is not None:
            self._full.close()
            self._full = None

    def full(self) -> VaultClient:
        """The httpx-based client with the same settings and the current token (for the proxy, uploads)."""
        if self._full is None:
            from vault_proxy.client.sync import VaultClient

            addr, _token, timeout, allow_insecure, verify = self._args
            self._full = VaultClient(addr, self.token, timeout, allow_insecure, verify=verify)
        self._full.token = self.token
        return self._full

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is not None:
            return self._connection
        if self._address.uds:
            self._connection = _UnixConnection(self._address.uds, self._timeout)
            return self._connection
        parts = urlsplit(self._address.base_url)
        if parts.scheme == "https":
            import ssl

            verify = self._verify
            if isinstance(verify, ssl.SSLContext):
                context = verify
            elif isinstance(verify, str):
                context = ssl.create_default_context(cafile=verify)
            else:
                context = ssl.create_default_context()
                if not verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self._timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self._timeout)
        self._connection = connection
        return connection

    def _send(self, call: calls.Call) -> Any:
        if call.files is not None:
            return self.full()._send(call)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if call.auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = None
        if call.json is not None:
            body = json.dumps(call.json).encode()
            headers["Content-Type"] = "application/json"
        path = urlsplit(self._address.base_url).path + call.path
        params = call.kwargs.get("params")
        if params:
            path += "?" + urlencode(params)
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connect()
            try:
                connection.request(call.method, path, body=body, headers=headers)
                response = connection.getresponse()
                content = response.read()
                break
            except (ConnectionRefusedError, FileNotFoundError, socket.gaierror) as exc:
                self.close()
                raise VaultConnectionError(self.addr, exc.strerror or type(exc).__name__) from None
            except TimeoutError:
                self.close()
                raise VaultError(0, f"request to vault-server at {self.addr} timed out") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed in the meantime: one fresh try.
                stale = reused and isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError)
                if attempt == 2 or not stale:
                    raise VaultError(0, f"request to vault-server at {self.addr} failed: {exc}") from None
        return calls.decode_body(call, response.status, response.reason, content)
