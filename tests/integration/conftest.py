"""Fixtures that run the real vault-proxy server as a subprocess, with a leak check at teardown.

``server``          a started (locked) server, function scope.
``start_server``    factory: ``start_server(token_ttl="2s")`` -> started ServerHandle; ``data_dir=``
                    and ``audit_log=`` override the paths, ``create_data_dir=False`` leaves the
                    server to create its data dir, ``start=False`` only prepares it.
``unlocked_server`` ``server`` unlocked with a fresh registered password (``.password``, ``.admin_token``).
``secrets``         the registry of secret strings the test uses: ``secrets.add(s)`` / ``secrets.new(label)``.

At teardown every server is stopped and every registered secret is searched for in every response the
test received through ``.http``/``.new_client()`` (headers and bodies, except ``GET /files/{name}``
bodies), in each server log, audit log and file of the data dir. Tokens the vault minted are also
searched for in the logs and data dir.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import (  # noqa: E402
    LEAK_TOTALS,
    ResponseRecorder,
    SecretRegistry,
    ServerHandle,
    find_leaks,
    flags_to_args,
    make_temp_dir,
    remove_temp_dirs,
)


@pytest.fixture(scope="session", autouse=True)
def _clean_temp_dirs() -> Iterator[None]:
    yield
    remove_temp_dirs()


def pytest_terminal_summary(terminalreporter) -> None:
    """One line with what every test's leak check looked at, summed over the run (docs/reliability.md)."""
    if LEAK_TOTALS.tests:
        terminalreporter.write_line(LEAK_TOTALS.summary())


@pytest.fixture
def secrets() -> SecretRegistry:
    return SecretRegistry()


@pytest.fixture
def recorder(secrets: SecretRegistry) -> ResponseRecorder:
    return ResponseRecorder(secrets)


@pytest.fixture
def start_server(secrets: SecretRegistry, recorder: ResponseRecorder) -> Iterator[Callable[..., ServerHandle]]:
    handles: list[ServerHandle] = []

    def factory(
        *extra: str,
        data_dir: str | Path | None = None,
        audit_log: str | Path | None = None,
        start: bool = True,
        create_data_dir: bool = True,
        **flags: object,
    ) -> ServerHandle:
        base = make_temp_dir()
        data = Path(data_dir) if data_dir is not None else base / "data"
        if data_dir is None and create_data_dir:
            data.mkdir(mode=0o700)
        audit = Path(audit_log) if audit_log is not None else data / "audit.jsonl"
        handle = ServerHandle(
            base_dir=base,
            data_dir=data,
            audit_path=audit,
            extra=[*flags_to_args(flags), *extra],
            recorder=recorder,
            registry=secrets,
        )
        handles.append(handle)
        if start:
            handle.start()
        return handle

    yield factory

    for handle in handles:
        handle.stop()
    for handle in handles:
        tail = handle.log_text()[-4000:]
        print(f"---- server log {handle.log_path} (tail) ----\n{tail}")
    leaks = find_leaks(secrets, recorder, handles)
    for handle in handles:
        handle.cleanup()
    if leaks:
        pytest.fail("secret leak check failed:\n" + "\n".join(leaks), pytrace=False)


@pytest.fixture
def server(start_server: Callable[..., ServerHandle]) -> ServerHandle:
    return start_server()


@pytest.fixture
def unlocked_server(server: ServerHandle, secrets: SecretRegistry) -> ServerHandle:
    server.unlock(secrets.new("master-pw"))
    return server


# --------------------------------------------------------------------------- HTTP proxy fixtures
# The local HTTPS upstream (tests/peers/upstream.py) and a server that trusts its CA.

sys.path.insert(0, str(Path(__file__).parent.parent / "peers"))

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
from helpers import Recorded, create_token, unique  # noqa: E402
from upstream import Upstream  # noqa: E402

ALLOW_LOOPBACK = ("--allow-private", "127.0.0.0/8", "--allow-private", "::1/128")


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    workdir = Path(tempfile.mkdtemp(prefix="vp-upstream-", dir="/tmp"))
    peer = Upstream(workdir).start()
    yield peer
    peer.stop()
    shutil.rmtree(workdir, ignore_errors=True)


class ProxyEnv:
    """A started, unlocked server that trusts the upstream's CA, plus shortcuts for proxied calls."""

    def __init__(self, server: ServerHandle, upstream: Upstream, secrets: SecretRegistry) -> None:
        self.server = server
        self.upstream = upstream
        self.secrets = secrets
        self._token: str | None = None

    # -- services and tokens -----------------------------------------------------------------------

    def add(self, auth: dict, *, name: str | None = None, base_url: str | None = None, **options: object) -> str:
        """Add a service (base_url defaults to the upstream) and return its name."""
        name = name or unique("svc")
        body = {"name": name, "base_url": base_url or self.upstream.url, "auth": auth, **options}
        resp = self.server.http.post("/services", json=body, headers=self.server.admin_headers())
        assert resp.status_code == 201, f"add service: {resp.status_code} {resp.text}"
        return name

    def bearer(self, **options: object) -> tuple[str, str]:
        """A bearer service on the upstream: (name, its registered secret token)."""
        token = self.secrets.new("bearer")
        return self.add({"type": "bearer", "token": token}, **options), token

    def token(self, services: list[str] | None = None, *, fresh: bool = False) -> str:
        """A proxy-scope token (unrestricted ones are cached); the upstream rejects any request carrying it."""
        if services is None and self._token is not None and not fresh:
            return self._token
        body: dict[str, object] = {"scope": "proxy"}
        if services is not None:
            body["services"] = services
        token = create_token(self.server, body)["id"]
        self.upstream.forbidden.add(token)
        if services is None:
            self._token = token
        return token

    def relock(self) -> None:
        """Lock and unlock again (all tokens, jars and caches are gone afterwards)."""
        resp = self.server.http.post("/auth/lock", headers=self.server.admin_headers())
        assert resp.status_code == 200, resp.text
        self._token = None
        self.server.unlock()
        self.upstream.forbidden.add(self.server.admin_token or "")

    # -- calls -------------------------------------------------------------------------------------

    def url(self, service: str, path: str = "") -> str:
        return f"{self.server.addr}/proxy/{service}{path}"

    def call(
        self, method: str, service: str, path: str = "", *, token: str | None = None, headers=None, **kwargs
    ) -> httpx.Response:
        """A proxied call through the recorded client, authenticated with ``Authorization: Bearer``."""
        all_headers = {"Authorization": f"Bearer {token or self.token()}"}
        all_headers.update(headers or {})
        return self.server.http.request(method, self.url(service, path), headers=all_headers, **kwargs)

    def stream(
        self, method: str, service: str, path: str = "", *, token: str | None = None, headers=None, **kwargs
    ) -> tuple[httpx.Response, list[tuple[float, bytes]]]:
        """A proxied call read as a stream: (response, [(seconds since the request, decoded chunk)]).

        Uses an unrecorded client (the recorder would read the whole body before returning) and adds
        the response to the leak check afterwards.
        """
        all_headers = {"Authorization": f"Bearer {token or self.token()}"}
        all_headers.update(headers or {})
        chunks: list[tuple[float, bytes]] = []
        started = time.monotonic()
        with (
            httpx.Client(timeout=60.0) as client,
            client.stream(method, self.url(service, path), headers=all_headers, **kwargs) as resp,
        ):
            for chunk in resp.iter_bytes():
                chunks.append((time.monotonic() - started, chunk))
        self.record(resp, b"".join(chunk for _, chunk in chunks))
        return resp, chunks

    def record(self, resp: httpx.Response, body: bytes) -> None:
        """Add a response read outside the recording client (streams) to the leak check."""
        self.server.recorder.responses.append(
            Recorded(
                method=resp.request.method,
                path=resp.request.url.raw_path.decode("ascii", "replace").split("?", 1)[0],
                status=resp.status_code,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw],
                body=body,
            )
        )

    def audit(self) -> list[dict]:
        if not self.server.audit_path.is_file():
            return []
        lines = self.server.audit_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def proxy_audit(self, service: str) -> list[dict]:
        return [e for e in self.audit() if e.get("action") == "proxy" and e.get("service") == service]


def _start_proxy_server(start_server, upstream: Upstream, secrets: SecretRegistry, *extra: str) -> ProxyEnv:
    server = start_server("--ca-file", str(upstream.ca_path), *extra)
    server.unlock(secrets.new("master-pw"))
    upstream.forbidden.add(server.admin_token or "")
    return ProxyEnv(server, upstream, secrets)


@pytest.fixture
def proxy_env(start_server, upstream: Upstream, secrets: SecretRegistry) -> ProxyEnv:
    """Server with ``--ca-file <upstream CA>`` and ``--allow-private`` for loopback, unlocked."""
    return _start_proxy_server(start_server, upstream, secrets, *ALLOW_LOOPBACK)


@pytest.fixture
def strict_proxy_env(start_server, upstream: Upstream, secrets: SecretRegistry) -> ProxyEnv:
    """Server with ``--ca-file`` but WITHOUT ``--allow-private`` (the SSRF rules apply to loopback)."""
    return _start_proxy_server(start_server, upstream, secrets)
