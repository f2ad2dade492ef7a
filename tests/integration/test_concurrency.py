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


def test_revocation_applies_to_the_very_next_request_even_under_load(unlocked_server):

    victim = create_token(unlocked_server, {"scope": "proxy"})["id"]
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_hammer, args=(unlocked_server, victim, stop, results)) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    resp = unlocked_server.http.delete(f"/tokens/{victim}", headers=unlocked_server.admin_headers())
    revoked_at = time.monotonic()
    assert resp.status_code == 200
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(10)
    after = [status for sent, status in results if sent > revoked_at]
    assert after and set(after) == {401}, "a request sent after the revocation answered still got in"
    assert 200 in {status for sent, status in results if sent < revoked_at}


def test_lock_applies_to_the_very_next_request_even_under_load(unlocked_server):

    proxy_token = create_token(unlocked_server, {"scope": "proxy"})["id"]
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_hammer, args=(unlocked_server, proxy_token, stop, results)) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    resp = unlocked_server.http.post("/auth/lock", headers=unlocked_server.admin_headers())
    locked_at = time.monotonic()
    assert resp.status_code == 200
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(10)
    after = [status for sent, status in results if sent > locked_at]
    assert after and set(after) == {401}
    assert unlocked_server.http.get("/health").json() == {"status": "locked"}
