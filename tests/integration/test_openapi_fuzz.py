"""Schemathesis against a live, unlocked server: no 5xx, every error is JSON, answers match docs/openapi.yaml.

The schema is the one the server serves at ``GET /openapi.json``. Every operation is fuzzed with positive
(schema-valid) and negative (schema-violating) cases, a bounded number of each, under a total time cap.

The fuzzer never reaches the network: the server runs WITHOUT ``--allow-private`` (so the address policy
refuses loopback), every service it can call through points at 127.0.0.1 only, and the operations that
dial out (proxy, SSH, TCP sessions) are fuzzed first, while only those services exist; the operations
that create services come after them. The one upstream that is reachable in homelab mode is a port this
test holds bound without listening (connection refused → 502). ``/auth/passwd`` and ``/auth/lock`` run
last, so the vault stays usable for everything else. At the end the audit log must show that no proxy
call got an upstream answer and that every call naming another service was a 404; the server log must
hold no traceback; and the leak check of the fixtures covers every fuzzed response.

``VAULT_FUZZ_EXAMPLES`` (default 25) sets the examples per operation and mode, ``VAULT_FUZZ_SECONDS``
(default 90) the time cap; operations left when the cap is reached are reported as skipped.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import schemathesis
import yaml
from helpers import (
    SECURITY_HEADERS,
    Recorded,
    add_service,
    create_token,
    service_account_json,
    ssh_private_key_pem,
    upload_file,
)
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.timeout(400)

EXAMPLES = int(os.environ.get("VAULT_FUZZ_EXAMPLES", "25"))
BUDGET_SECONDS = float(os.environ.get("VAULT_FUZZ_SECONDS", "90"))
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]
# Routes whose documented failures include 502/504: they reach an upstream (here: one that refuses).
UPSTREAM_PREFIXES = ("/proxy/", "/ssh/", "/imap/", "/smtp/", "/redis/", "/postgres/", "/{proto}/")
# Fuzzed first, while only our loopback services exist (these dial out on a service's behalf).
DIALING = ("/proxy/", "/ssh/", "/{proto}/")
READ_ONLY = {("GET", p) for p in ("/health", "/health/tokens", "/services", "/services/{name}", "/tokens", "/files",
                                  "/files/{name}", "/openapi.json")}  # fmt: skip
LAST = [("POST", "/auth/passwd"), ("POST", "/auth/lock")]


@dataclass
class Tally:
    examples: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    nothing_to_generate: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _closed_port() -> socket.socket:
    """A loopback port bound but not listening: connections to it are refused, and nobody else can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _services(server, secrets, port: int) -> dict[str, dict]:
    """One service of each kind the dialing routes care about; every address is 127.0.0.1."""
    key_file, sa_file, client_file = "fz-key", "fz-sa.json", "fz-client.json"
    assert upload_file(server, key_file, ssh_private_key_pem()).status_code == 201
    sa = json.loads(service_account_json(secrets))
    sa["token_uri"] = f"https://127.0.0.1:{port}/token"
    assert upload_file(server, sa_file, json.dumps(sa).encode(), "application/json").status_code == 201
    client = {"installed": {"client_id": "fz-client-id", "client_secret": secrets.new("client-secret"),
                            "token_uri": f"https://127.0.0.1:{port}/token",
                            "auth_uri": f"https://127.0.0.1:{port}/auth"}}  # fmt: skip
    assert upload_file(server, client_file, json.dumps(client).encode(), "application/json").status_code == 201
    local = f"https://127.0.0.1:{port}/v1"
    bodies = {
        "fz-bearer": {"base_url": local, "auth": {"type": "bearer", "token": secrets.new("bearer")}},
        "fz-homelab": {"base_url": f"http://127.0.0.1:{port}/v1", "tls_skip_verify": True,
                       "auth": {"type": "header", "header_name": "X-Key", "header_value": secrets.new("hdr")}},
        "fz-url": {"base_url": f"https://127.0.0.1:{port}/k/{{token}}/", "auth": {"type": "url",
                                                                             "token": secrets.new("url")}},
        "fz-oauth": {"base_url": local, "auth": {
            "type": "oauth2_client", "client_id": "fz-id", "client_secret": secrets.new("oauth-secret"),
            "token_url": f"https://127.0.0.1:{port}/token", "refresh_token": secrets.new("refresh")}},
        "fz-sa": {"base_url": local, "auth": {"type": "service_account", "file_ref": sa_file}},
        "fz-ssh": {"auth": {"type": "ssh_key", "ssh_host": "127.0.0.1", "ssh_port": port, "ssh_user": "fuzz",
                            "ssh_key_file_ref": key_file}},
        "fz-redis": {"auth": {"type": "redis", "redis_host": "127.0.0.1", "redis_port": port,
                              "redis_password": secrets.new("redis")}},
        "fz-imap": {"auth": {"type": "imap", "imap_host": "127.0.0.1", "imap_port": port, "imap_user": "u",
                             "imap_password": secrets.new("imap")}},
        "fz-smtp": {"auth": {"type": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_user": "u",
                             "smtp_password": secrets.new("smtp")}},
        "fz-postgres": {"auth": {"type": "postgres", "postgres_host": "127.0.0.1", "postgres_port": port,
                                 "postgres_user": "u", "postgres_db": "d", "postgres_password": secrets.new("pg")}},
    }  # fmt: skip
    for name, body in bodies.items():
        add_service(server, {"name": name, **body})
    return {"services": bodies, "files": [key_file, sa_file, client_file], "client_file": client_file}


def _steer(document: dict, fixtures: dict) -> dict:
    """A copy of the document whose positive cases aim at our fixtures (negative cases still go anywhere)."""
    doc = copy.deepcopy(document)
    names = sorted(fixtures["services"])
    by_route = {  # names whose auth type the route serves, plus one that it refuses (400)
        "/ssh/": ["fz-ssh", "fz-bearer"],
        "/{proto}/": ["fz-imap", "fz-smtp", "fz-redis", "fz-postgres", "fz-ssh"],
        "/proxy/": ["fz-bearer", "fz-homelab", "fz-url", "fz-oauth", "fz-sa", "fz-redis"],
        "/files/": fixtures["files"],
    }
    shared = doc["components"]["parameters"]
    for path, item in doc["paths"].items():
        params = item.get("parameters", [])
        for index, param in enumerate(params):
            if "$ref" in param:
                param = params[index] = copy.deepcopy(shared[param["$ref"].rsplit("/", 1)[1]])
            if param.get("name") == "name" and param.get("in") == "path":
                values = next((v for prefix, v in by_route.items() if path.startswith(prefix)), names)
                param["schema"] = {"type": "string", "enum": values}
    body = doc["paths"]["/auth/oauth2/authorize"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body["properties"]["client_secret_file"] = {"type": "string", "enum": [fixtures["client_file"]]}
    body["properties"]["base_url"] = {"type": "string", "enum": ["https://127.0.0.1/v1", "https://127.0.0.1:1/"]}
    upload = doc["paths"]["/ssh/{name}/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    upload["properties"]["mode"] = {"type": "string", "enum": ["0644", "0600", "755"]}
    for fields in (upload["properties"], doc["paths"]["/ssh/{name}/download"]["post"]["requestBody"]["content"]
                   ["application/json"]["schema"]["properties"]):  # fmt: skip
        fields["remote_path"] = {"type": "string", "pattern": "^/tmp/[a-z]{1,8}$"}
    return doc


def _order(schema) -> list:
    """Operations in a safe order: dialing routes, read-only ones, the rest, reads again, passwd and lock."""
    operations = [result.ok() for result in schema.get_all_operations()]
    key = {(op.method.upper(), op.path): op for op in operations}
    dialing = [op for op in operations if op.path.startswith(DIALING)]
    reads = [op for op in operations if (op.method.upper(), op.path) in READ_ONLY]
    last = [key[item] for item in LAST]
    rest = [op for op in operations if op not in dialing and op not in reads and op not in last]
    rest.sort(key=lambda op: not op.path.startswith("/auth/oauth2/"))  # before DELETE /files takes the client file
    return [*dialing, *reads, *rest, *reads, *last]


def _has_input(document: dict, operation) -> bool:
    item = document["paths"][operation.path]
    raw = item[operation.method.lower()]
    return bool(item.get("parameters") or raw.get("parameters") or raw.get("requestBody"))


def _check_response(case, response, label: str) -> None:
    """Ours on top of schemathesis's: no 5xx (but upstream 502/504), JSON errors, the security headers."""
    status = response.status_code
    path = case.operation.path
    if status >= 500:
        assert status in (502, 504) and path.startswith(UPSTREAM_PREFIXES), f"{label}: server error {status}"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == [value], f"{label}: {name} is {response.headers.get(name)}"
    if status < 400:
        return
    assert response.headers.get("x-vault-error") == ["1"], f"{label}: {status} without X-Vault-Error"
    ctype = (response.headers.get("content-type") or [""])[0]
    if path == "/auth/oauth2/callback" and ctype.startswith("text/html"):
        return  # the browser's error pages
    assert ctype.startswith("application/json"), f"{label}: {status} with content-type {ctype!r}"
    if case.method.upper() == "HEAD":
        return
    body = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], f"{label}: {body!r}"


def _record(server, response) -> None:
    """Add a fuzzed response to the fixtures' leak check."""
    request = response.request
    server.recorder.responses.append(
        Recorded(
            method=request.method,
            path=(request.path_url or "").split("?", 1)[0],
            status=response.status_code,
            headers=[(k, v) for k, values in response.headers.items() for v in values],
            body=response.content,
        )
    )


def _fuzz(operation, mode: GenerationMode, examples: int, server, headers: dict, guard, tally: Tally) -> None:
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode).filter(guard))
    def run(case) -> None:
        response = case.call(base_url=server.addr, headers=headers, timeout=30)
        tally.examples[label] += 1
        tally.statuses[(label, response.status_code)] += 1
        _record(server, response)
        _check_response(case, response, label)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


def test_fuzz_the_live_api(unlocked_server, secrets) -> None:
    server = unlocked_server
    served = server.http.get("/openapi.json")
    assert served.status_code == 200
    document = served.json()
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.yaml"), encoding="utf-8") as f:
        assert document == yaml.safe_load(f), "the served document is not docs/openapi.yaml"

    refused = _closed_port()
    try:
        fixtures = _services(server, secrets, refused.getsockname()[1])
        token = create_token(server, {"scope": "admin", "name": "fuzzer"})["id"]
        headers = {"Authorization": f"Bearer {token}"}

        def guard(case) -> bool:  # never revoke our own token (a 1 in 16^8 chance, but free to rule out)
            prefix = str((case.path_parameters or {}).get("token_id", ""))
            return not (len(prefix) >= 8 and token.startswith(prefix))

        schema = schemathesis.openapi.from_dict(_steer(document, fixtures))
        tally = Tally()
        started = time.monotonic()
        for operation in _order(schema):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
                is_last = (operation.method.upper(), operation.path) in LAST
                if time.monotonic() - started > BUDGET_SECONDS and not is_last:
                    tally.skipped.append(label)
                    continue
                if mode is GenerationMode.NEGATIVE and not _has_input(document, operation):
                    tally.nothing_to_generate.append(label)  # nothing in the request to violate
                    continue
                examples = min(EXAMPLES, 5) if is_last else EXAMPLES
                try:
                    _fuzz(operation, mode, examples, server, headers, guard, tally)
                except (Exception, FailureGroup) as exc:  # noqa: BLE001 - go on with the others, report all at the end
                    tally.failures.append(f"{label}: {type(exc).__name__}: {exc}"[:3000])
        elapsed = time.monotonic() - started
    finally:
        refused.close()

    total = sum(tally.examples.values())
    print(f"\nfuzzed {len(tally.examples)} operation/mode pairs, {total} requests in {elapsed:.1f}s")
    for label, count in sorted(tally.examples.items()):
        statuses = sorted((status, n) for (lab, status), n in tally.statuses.items() if lab == label)
        print(f"  {count:4d}  {label}  {dict(statuses)}")
    if tally.nothing_to_generate:
        print(f"no negative cases (no parameters or body): {sorted(set(tally.nothing_to_generate))}")
    if tally.skipped:
        print(f"skipped after the {BUDGET_SECONDS:.0f}s cap: {tally.skipped}")
    assert total > 0
    assert not tally.failures, "\n\n".join(tally.failures)

    # The network was never reached: proxy calls went to our loopback services only, none got an upstream answer.
    audit = [json.loads(line) for line in server.audit_path.read_text().splitlines() if line.strip()]
    strangers = [e for e in audit if e.get("action") == "proxy" and e.get("service") not in fixtures["services"]]
    assert all(entry["status"] == 404 for entry in strangers), [e for e in strangers if e["status"] != 404][:5]
    assert not [entry for entry in audit if entry.get("action") == "proxy" and "upstream_status" in entry]
    log = server.log_text()  # nothing failed behind a clean-looking answer either
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
