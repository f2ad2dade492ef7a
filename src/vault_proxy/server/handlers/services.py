"""Service CRUD. Responses carry ServiceInfo only: never a secret."""

from __future__ import annotations

from aiohttp import web

from ...vault.info import service_info, unreadable_info
from ...vault.models import Service, validate_service_name
from ...vault.validation import ServiceValidationError, parse_service
from ..bodies import json_response, read_json_object
from ..context import AppContext, ctx
from ..errors import BadRequest, NotFound
from ..request_keys import TOKEN
from ..routing import endpoint


def visible_service(request: web.Request, name: str) -> Service:
    """The named service, if it exists and the caller's token may see it (404 otherwise, alike)."""
    service = ctx(request).store.services.get(name)
    record = request[TOKEN]
    if service is None or not record.may_use(name):
        raise NotFound(f'service "{name}" not found')
    return service


def _unreadable(request: web.Request, name: str) -> dict | None:
    """The listing of a vault-file entry that cannot be read, if ``name`` is one the caller may see."""
    entry = ctx(request).store.unreadable.get(name)
    if entry is None or not request[TOKEN].may_use(name):
        return None
    return unreadable_info(name, *entry)


def _info(context: AppContext, service: Service) -> dict:
    """ServiceInfo plus runtime facts (an SSH service's live connection)."""
    extra = {"ssh_connected": context.ssh.connected(service.name)} if service.auth.type == "ssh_key" else None
    return service_info(service, extra)


@endpoint("service.list", "proxy")
async def list_services(request: web.Request) -> web.Response:
    record = request[TOKEN]
    context = ctx(request)
    services, unreadable = context.store.services, context.store.unreadable
    listed = [_info(context, services[n]) for n in services if record.may_use(n)]
    listed += [info for n in unreadable if (info := _unreadable(request, n)) is not None]
    return json_response(sorted(listed, key=lambda info: info["name"]))


@endpoint("service.get", "proxy")
async def get_service(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    unreadable = _unreadable(request, name)
    if unreadable is not None:
        return json_response(unreadable)
    return json_response(_info(ctx(request), visible_service(request, name)))


async def _upsert(request: web.Request, path_name: str | None) -> Service:
    body = await read_json_object(request)
    name = path_name if path_name is not None else body.get("name")
    try:
        name = validate_service_name(name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None

    def build(previous: Service | None) -> Service:
        try:
            return parse_service(body, name=path_name, previous=previous)
        except ServiceValidationError as exc:
            raise BadRequest(str(exc)) from None

    context = ctx(request)
    service = await context.store.put_service(name, build)
    # TCP sessions logged in with what the service held end now (new ones use the new settings).
    context.sessions.close_service(name)
    return service


@endpoint("service.add", "admin")
async def add_service(request: web.Request) -> web.Response:
    return json_response(_info(ctx(request), await _upsert(request, None)), status=201)


@endpoint("service.update", "admin")
async def update_service(request: web.Request) -> web.Response:
    return json_response(_info(ctx(request), await _upsert(request, request.match_info["name"])))


@endpoint("service.delete", "admin")
async def delete_service(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if _unreadable(request, name) is None:
        visible_service(request, name)
    context = ctx(request)
    await context.store.delete_service(name)
    context.forget_service(name)
    return json_response({"status": "deleted"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/services", list_services, allow_head=False),
        web.post("/services", add_service),
        web.get("/services/{name}", get_service, allow_head=False),
        web.put("/services/{name}", update_service),
        web.delete("/services/{name}", delete_service),
    ]
