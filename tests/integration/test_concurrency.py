"""Concurrency (issue: reliability evidence): many writers at once lose nothing; revocation and lock apply to
the very next request, including requests racing them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from helpers import bearer_service, create_token, service_names, unique

WRITERS = 200


def test_200_concurrent_upserts_from_separate_clients_all_land(unlocked_server, secrets):
    prefix = unique("conc")
    barrier = threading.Barrier(WRITERS, timeout=30)

    def upsert(i: int) -> int:
        with httpx.Client(base_url=unlocked_server.addr, timeout=60) as client:  # one connection per writer
            body = bearer_service(f"{prefix}-{i}", f"conc-SECRET-{prefix}-{i}")
            barrier.wait()
            return client.post("/services", json=body, headers=unlocked_server.admin_headers()).status_code

    with ThreadPoolExecutor(WRITERS) as pool:
        statuses = list(pool.map(upsert, range(WRITERS)))
    assert statuses == [201] * WRITERS
    names = set(service_names(unlocked_server))
    assert {f"{prefix}-{i}" for i in range(WRITERS)} <= names
    # The file on disk holds all of them: a restart (which re-reads vault.enc) shows the same set.
    unlocked_server.restart()
    unlocked_server.unlock(unlocked_server.password)
    assert {f"{prefix}-{i}" for i in range(WRITERS)} <= set(service_names(unlocked_server))


def _hammer(server, token: str, stop: threading.Event, results: list[tuple[float, int]]) -> None:

    with httpx.Client(base_url=server.addr, timeout=10) as client:
        while not stop.is_set():
            sent = time.monotonic()
            status = client.get("/services", headers={"Authorization": f"Bearer {token}"}).status_code
            results.append((sent, status))


def _statuses_around(server, token: str, action) -> tuple[set[int], set[int]]:
    """Statuses of requests sent before ``action()`` returned, and of those sent after, under 4 clients."""
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_hammer, args=(server, token, stop, results)) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    action()
    done_at = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(10)
    return {s for sent, s in results if sent < done_at}, {s for sent, s in results if sent > done_at}


def test_revocation_applies_to_the_very_next_request_even_under_load(unlocked_server):
    victim = create_token(unlocked_server, {"scope": "proxy"})["id"]

    def revoke() -> None:
        assert (
            unlocked_server.http.delete(f"/tokens/{victim}", headers=unlocked_server.admin_headers()).status_code == 200
        )

    before, after = _statuses_around(unlocked_server, victim, revoke)
    assert after == {401}, "a request sent after the revocation answered still got in"
    assert 200 in before


def test_lock_applies_to_the_very_next_request_even_under_load(unlocked_server):
    proxy_token = create_token(unlocked_server, {"scope": "proxy"})["id"]

    def lock() -> None:
        assert unlocked_server.http.post("/auth/lock", headers=unlocked_server.admin_headers()).status_code == 200

    before, after = _statuses_around(unlocked_server, proxy_token, lock)
    assert after == {401} and 200 in before
    assert unlocked_server.http.get("/health").json() == {"status": "locked"}
