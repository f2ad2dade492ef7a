"""The one address policy (SSRF defence): resolve once, classify every address, connect to what was checked.

Used by the HTTP proxy now, and by anything else that dials out on a service's behalf. An address is
allowed when it is globally routable, or inside an ``--allow-private`` network. Services with
``tls_skip_verify`` (the homelab escape hatch) may also reach private ranges, but never link-local or
cloud metadata addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.ip_network
# (network, reason), checked in order; the first match names the refusal.
_V4_RULES: tuple[tuple[IPNetwork, str], ...] = (
    (_V4("100.100.100.200/32"), "metadata"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "cgnat"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)
_V6_RULES: tuple[tuple[IPNetwork, str], ...] = (
    (_V4("fd00:ec2::254/128"), "metadata"),
    (_V4("::/128"), "unspecified"),
    (_V4("::1/128"), "loopback"),
    (_V4("fe80::/10"), "link-local"),
    (_V4("fc00::/7"), "private"),
    (_V4("ff00::/8"), "multicast"),
    (_V4("2001:db8::/32"), "documentation"),
    (_V4("100::/64"), "reserved"),
    (_V4("fec0::/10"), "reserved"),
)
# Kinds of address a homelab service may still reach; link-local and metadata are never among them.
_HOMELAB_OK = frozenset({"loopback", "private", "cgnat", "unspecified"})


class AddressNotAllowed(Exception):
    """A host resolved to an address the policy refuses. ``str()`` is safe to log."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host} resolves to {address} ({reason}), which is not allowed")
        self.host, self.address, self.reason = host, address, reason


class ResolveFailed(Exception):
    """The host name could not be resolved."""

    def __init__(self, host: str, detail: str = "") -> None:
        super().__init__(f"cannot resolve {host}" + (f": {detail}" if detail else ""))
        self.host = host


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = address.packed
    if packed[:12] == bytes(12) and int(address) > 1:  # ::a.b.c.d (deprecated IPv4-compatible)
        return ipaddress.IPv4Address(packed[12:])
    if address in _V4("64:ff9b::/96") or address in _V4("64:ff9b:1::/48"):
        return ipaddress.IPv4Address(packed[12:])
    return None


def classify(address: IPAddress) -> str | None:
    """None for a globally routable address, else why it is not (``loopback``, ``private``…)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = classify(inner)
            return f"ipv4-embedded {reason}" if reason else None
        rules = _V6_RULES
    else:
        rules = _V4_RULES
    for network, reason in rules:
        if address in network:
            return reason
    return None if address.is_global else "reserved"


def parse_cidrs(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``--allow-private`` values (comma-separated allowed) as networks; ValueError names a bad one."""
    networks = []
    for item in values:
        for text in filter(None, (part.strip() for part in item.split(","))):
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"{text!r} is not a CIDR network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    allow_private: tuple[IPNetwork, ...] = ()
    homelab: bool = False

    def with_homelab(self) -> AddressPolicy:
        return replace(self, homelab=True)

    def _allowed_by_operator(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and (inner := embedded_ipv4(address)) is not None:
            candidates.append(inner)
        return any(c.version == n.version and c in n for c in candidates for n in self.allow_private)

    def refusal(self, address: IPAddress) -> str | None:
        """None when the policy allows ``address``, else the reason it does not."""
        reason = classify(address)
        if reason is None or self._allowed_by_operator(address):
            return None
        if self.homelab and reason.removeprefix("ipv4-embedded ") in _HOMELAB_OK:
            return None
        return reason

    def check(self, host: str, address: str) -> None:
        reason = self.refusal(ipaddress.ip_address(address.split("%", 1)[0]))
        if reason is not None:
            raise AddressNotAllowed(host, address, reason)


@dataclass(frozen=True)
class ResolvedAddress:
    host: str
    address: str
    port: int
    family: int


async def resolve_checked(
    host: str, port: int, policy: AddressPolicy, *, family: int = socket.AF_UNSPEC
) -> list[ResolvedAddress]:
    """Resolve ``host`` once; refuse if ANY address is refused; return the validated addresses."""
    name = host.strip("[]")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, port, family=family, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveFailed(name, getattr(exc, "strerror", "") or "") from None
    results: list[ResolvedAddress] = []
    seen: set[str] = set()
    for fam, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        policy.check(name, address)
        if address not in seen:
            seen.add(address)
            results.append(ResolvedAddress(name, address, port, fam))
    if not results:
        raise ResolveFailed(name, "no addresses")
    return results


class GuardedResolver(AbstractResolver):
    """aiohttp resolver: the connection goes to the checked IP; SNI and certificate use the host name.

    aiohttp does not call a resolver for IP-literal hosts, so pair this with
    :func:`guarded_socket_factory`. A refusal reaches the caller of ``session.request`` wrapped in
    ``aiohttp.ClientConnectorError``; the ``AddressNotAllowed`` is on its ``__cause__`` chain.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await resolve_checked(host, port, self.policy, family=family)
        return [
            ResolveResult(
                hostname=host, host=item.address, port=port, family=item.family, proto=0, flags=socket.AI_NUMERICHOST
            )
            for item in found
        ]

    async def close(self) -> None:
        return None


def guarded_socket_factory(policy: AddressPolicy) -> Callable[[Any], socket.socket]:
    """aiohttp ``socket_factory``: checks the address actually dialled (IP literals included)."""

    def factory(addr_info: Any) -> socket.socket:
        family, sock_type, proto, _canon, sockaddr = addr_info
        policy.check(str(sockaddr[0]), str(sockaddr[0]))
        sock = socket.socket(family=family, type=sock_type, proto=proto)
        sock.setblocking(False)
        return sock

    return factory
