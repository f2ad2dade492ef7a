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
