"""docs/openapi.yaml: a valid OpenAPI 3 document, shipped unchanged as JSON, covering every route the app has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from vault_proxy.server.app import create_app
from vault_proxy.server.config import ServerConfig
from vault_proxy.server.handlers import openapi

ROOT = Path(__file__).resolve().parents[2]
YAML_PATH = ROOT / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(YAML_PATH.read_text(encoding="utf-8"))


def test_document_is_valid_openapi_3(document: dict) -> None:
    assert document["openapi"].startswith("3.")
    validate(document)  # raises OpenAPIValidationError with the offending path


def test_shipped_json_is_the_yaml(document: dict) -> None:
    shipped = json.loads(openapi.DOCUMENT.read_text(encoding="utf-8"))
    assert shipped == document, "docs/openapi.yaml changed: run python -m vault_proxy.server.handlers.openapi"


def test_operation_ids_are_unique_and_every_error_is_the_error_schema(document: dict) -> None:
    ids = [op["operationId"] for item in document["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))
    responses = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, operation in ((m, o) for m, o in item.items() if m in METHODS):
            for status, response in operation["responses"].items():
                if status == "default" or int(status) < 400:
                    continue
                response = responses[response["$ref"].rsplit("/", 1)[1]] if "$ref" in response else response
                if path == "/auth/oauth2/callback":  # the browser's pages
                    assert "text/html" in response["content"]
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def _template_regex(path: str) -> re.Pattern[str]:
    """A documented path as a regex; ``{path}`` (the proxied tail) may span segments, other parameters not."""
    pattern = re.escape(path).replace(r"\{path\}", ".+")
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern) + "$")


def _app_routes() -> set[tuple[str, str]]:
    """(method, concrete example path) for every route the app registers; ``*`` routes as each method."""
    app = create_app(ServerConfig(audit_log=None))
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        # /proxy/{name}{tail}: the optional tail means both /proxy/x and /proxy/x/more/path.
        examples = [canonical]
        if "{tail}" in canonical:
            examples = [canonical.replace("{tail}", ""), canonical.replace("{tail}", "/a/b")]
        methods = METHODS if route.method == "*" else (route.method.lower(),)
        for example in examples:
            concrete = re.sub(r"\{[^}]+\}", "x", example)
            found.update((method, concrete) for method in methods)
    return found


def test_every_registered_route_is_documented(document: dict) -> None:
    templates = [(_template_regex(path), item) for path, item in document["paths"].items()]
    missing = []
    for method, concrete in sorted(_app_routes()):
        if not any(regex.match(concrete) and method in item for regex, item in templates):
            missing.append(f"{method.upper()} {concrete}")
    assert not missing, f"routes missing from docs/openapi.yaml: {missing}"


def test_every_documented_operation_is_routed(document: dict) -> None:
    """No stale paths: each documented (method, path) reaches a registered handler (``proto`` by its enum)."""
    app = create_app(ServerConfig(audit_log=None))
    routed = []
    for path, item in document["paths"].items():
        concrete = path.replace("{path}", "a/b")
        protos = item.get("parameters", [{}])[0].get("schema", {}).get("enum", ["x"]) if "{proto}" in path else ["x"]
        for proto in protos:
            example = re.sub(r"\{[^}]+\}", "x", concrete.replace("{proto}", proto))
            for method in (m for m in item if m in METHODS):
                routed.append((method, example))
    unrouted = [
        f"{method.upper()} {example}"
        for method, example in routed
        if not any(_matches(resource, method, example) for resource in app.router.resources())
    ]
    assert not unrouted, f"documented but not routed: {unrouted}"


def _matches(resource: web.AbstractResource, method: str, path: str) -> bool:
    info = resource.get_info()
    pattern = info.get("pattern")
    regex = pattern if pattern is not None else re.compile("^" + re.escape(info.get("path", "")) + "$")
    if not regex.match(path):
        return False
    return any(route.method in ("*", method.upper()) for route in resource)


async def test_served_document_needs_no_token_and_is_the_shipped_json(tmp_path: Path, document: dict) -> None:
    app = create_app(ServerConfig(data_dir=tmp_path, audit_log=None))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/openapi.json")
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.json() == document
