"""A token that fills the SSH server's channels gets a 503, never a 500 (red-team round 2 of #15).

Every call on a service shares one SSH connection; sshd refuses channels past ``MaxSessions`` (10 by
default, 2 here). That refusal was an unhandled ChannelOpenError: 500 with a traceback, for every caller.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import unique, upload_file
from sshd import Sshd


@pytest.fixture(scope="module")
def narrow_sshd(tmp_path_factory) -> Iterator[Sshd]:
    peer = Sshd(Path(tmp_path_factory.mktemp("sshd")), extra_config=["MaxSessions 2"]).start()
    yield peer
    peer.stop()


def test_channels_refused_by_sshd_are_a_503(proxy_env, narrow_sshd):
    for line in narrow_sshd.client_key_text.splitlines():
        if len(line) >= 40 and not line.startswith("-----"):
            proxy_env.secrets.add(line)
    key_file = unique("key")
    assert upload_file(proxy_env.server, key_file, narrow_sshd.client_key_text.encode()).status_code in (200, 201)
    auth = {"type": "ssh_key", "ssh_host": narrow_sshd.host, "ssh_port": narrow_sshd.port,
            "ssh_user": narrow_sshd.user, "ssh_key_file_ref": key_file}  # fmt: skip
    name = unique("ssh")
    resp = proxy_env.server.http.post("/services", json={"name": name, "auth": auth},
                                      headers=proxy_env.server.admin_headers())  # fmt: skip
    assert resp.status_code == 201, resp.text
    token = proxy_env.token()
    assert proxy_env.server.http.post(f"/ssh/{name}/exec", json={"command": "true"},
                                      headers={"Authorization": f"Bearer {token}"}).status_code == 200  # fmt: skip

    def run(_: int):
        with proxy_env.server.new_client(timeout=30) as client:
            return client.post(f"/ssh/{name}/exec", json={"command": "sleep 2", "timeout": 10},
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(run, range(5)))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses
    busy = next(r for r in answers if r.status_code == 503)
    assert "too many at once" in busy.json()["error"]
    assert "Traceback" not in proxy_env.server.log_text()
