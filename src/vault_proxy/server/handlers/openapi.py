"""``GET /openapi.json``: the OpenAPI 3 document of this API, without a token.

The source is ``docs/openapi.yaml``; the package ships it converted to ``openapi.json`` (next to this
module) so the server needs no YAML parser. A unit test fails when the two differ; regenerate with
``python -m vault_proxy.server.handlers.openapi`` (needs PyYAML, a dev dependency).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from aiohttp import web

from ..routing import endpoint

DOCUMENT = Path(__file__).with_name("openapi.json")
SOURCE = Path(__file__).parents[4] / "docs" / "openapi.yaml"  # in a source checkout only


@cache
def document_bytes() -> bytes:
    """The shipped document, compacted once (it is served as is afterwards)."""
    return json.dumps(json.loads(DOCUMENT.read_bytes()), separators=(",", ":")).encode()


@endpoint("openapi")
async def openapi_document(_request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [web.get("/openapi.json", openapi_document, allow_head=False)]


def regenerate(source: Path = SOURCE, target: Path = DOCUMENT) -> None:
    """Write ``target`` from the YAML ``source`` (YAML anchors and merge keys resolved)."""
    import yaml  # dev dependency only

    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    target.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    regenerate()
    print(f"wrote {DOCUMENT} from {SOURCE}")
