"""``ANY /proxy/{name}/{path}``: the credential-injecting HTTP proxy (SPEC §9)."""

from __future__ import annotations

from aiohttp import web

from ...outbound.destination import DestinationRefused
from ...proxy.errors import ProxyError
from ...proxy.forward import MIB, CallPlan, CallStats, forward
from ...proxy.target import proxied_tail
from ...vault.models import HTTP_AUTH_TYPES
from ..context import ctx
from ..errors import ApiError, BadRequest
from ..request_keys import CALL_STATS, TOKEN_HEADER
from ..routing import endpoint
from .services import visible_service


class _ProxyFailure(ApiError):
    def __init__(self, error: ProxyError) -> None:
        super().__init__(error.message)
        self.status = error.status


@endpoint("proxy", "proxy")
async def proxy(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    service = visible_service(request, name)
    kind = service.auth.type
    context = ctx(request)
    injector = context.injectors.get(kind)
    if kind not in HTTP_AUTH_TYPES:
        raise BadRequest(f'service "{name}" uses {kind} auth, which is not an HTTP service')
    if injector is None:
        raise BadRequest(f'service "{name}" uses {kind} auth, which this server cannot inject yet')
    stats = CallStats()
    request[CALL_STATS] = stats
    try:
        prepared = context.prepared.cached(service)
        if prepared is None:
            credential = await injector.credential(service)
            prepared = context.prepared.prepare(service, credential, static=getattr(injector, "static", False))
        plan = CallPlan(
            service=name,
            destination=prepared.destination(proxied_tail(request.raw_path, name)),
            credential=prepared.credential,
            secrets=prepared.secrets,
            scrubber=prepared.scrubber,
            homelab=service.tls_skip_verify,
            max_request_bytes=(service.max_request_mb or context.config.max_request_mb) * MIB,
            token_header=request[TOKEN_HEADER],
            jar=context.cookie_jars.for_service(name) if service.session_cookies else None,
        )
        return await forward(request, plan, context.upstream, stats)
    except DestinationRefused as exc:
        stats.error = str(exc)
        raise BadRequest(str(exc)) from None
    except ProxyError as exc:
        stats.error = stats.error or exc.cause or exc.message
        raise _ProxyFailure(exc) from None
    finally:
        if stats.redactions:  # a secret came back from the upstream: worth its own audit event
            context.audit.record("proxy.redacted", service=name, path=request.path, hits=stats.redactions)


def routes() -> list[web.RouteDef]:
    return [
        # One resource for both /proxy/{name} and /proxy/{name}/...: one regex match per call.
        web.route("*", "/proxy/{name}{tail:(/.*)?}", proxy),
    ]
