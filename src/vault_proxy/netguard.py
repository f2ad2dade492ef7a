"""The one address policy (SSRF defence): resolve once, classify every address, connect to what was checked.

Used by the HTTP proxy, and by anything else that dials out on a service's behalf (SSH, TCP sessions,
OAuth token URLs). An address is allowed when it is globally routable, or inside an ``--allow-private``
network. A ``homelab`` policy (services with ``tls_skip_verify``) may also reach loopback, RFC 1918,
ULA and CGNAT ranges, but never link-local or cloud metadata addresses.
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
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]  # one socket.getaddrinfo() entry

_net = ipaddress.ip_network
# (network, reason), checked in order: the first match names the refusal. Metadata comes first because
# those addresses sit inside ranges a homelab policy may reach (CGNAT, ULA) or that look global (Azure).
_V4_RULES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (_net(cidr), reason)
    for cidr, reason in (
        ("169.254.169.254/32", "metadata"),  # AWS, GCP, Azure, DigitalOcean, OpenStack...
        ("169.254.170.2/32", "metadata"),  # AWS ECS task credentials
        ("100.100.100.200/32", "metadata"),  # Alibaba Cloud
        ("168.63.129.16/32", "metadata"),  # Azure WireServer (a "virtual public IP")
        ("192.0.0.192/32", "metadata"),  # Oracle Cloud
        ("169.254.0.0/16", "link-local"),
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
    )
)
_V6_RULES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (_net(cidr), reason)
    for cidr, reason in (
        ("fd00:ec2::254/128", "metadata"),  # AWS
        ("fd20:ce::254/128", "metadata"),  # GCP
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "ipv4-compatible"),  # deprecated ::a.b.c.d
        ("::/8", "reserved"),  # incl. SIIT ::ffff:0:a.b.c.d
        ("64:ff9b:1::/48", "reserved"),  # local-use NAT64: where the IPv4 sits is not knowable
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("fc00::/7", "private"),  # ULA
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("100::/64", "reserved"),  # discard-only
    )
)
_GLOBAL_UNICAST_V6 = _net("2000::/3")
_NAT64 = _net("64:ff9b::/96")
# Kinds of address a homelab policy may still reach; link-local and metadata are never among them.
_HOMELAB_OK = frozenset({"loopback", "private", "cgnat"})
# SSH hosts are usually on the LAN: private ranges are fine, loopback only with --allow-private.
_LAN_OK = frozenset({"private", "cgnat"})


class AddressNotAllowed(Exception):
    """A host resolved to an address the policy refuses. ``str()`` is safe to log: host, address, reason."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        where = address if host == address else f"{host} resolves to {address}"
        super().__init__(f"{where} ({reason}), which is not allowed")
        self.host, self.address, self.reason = host, address, reason


class ResolveFailed(Exception):
    """The host name could not be resolved; ``str()`` names the host."""

    def __init__(self, host: str, detail: str = "") -> None:
        super().__init__(f"cannot resolve {host}" + (f": {detail}" if detail else ""))
        self.host = host


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a mapped, NAT64 (well-known prefix) or 6to4 address leads to, with the form's name."""
    if address.ipv4_mapped is not None:
        return "ipv4-mapped", address.ipv4_mapped
    if address in _NAT64:
        return "nat64", ipaddress.IPv4Address(address.packed[12:])
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    return None


def classify(address: IPAddress) -> str | None:
    """None for a globally routable address, else why it is not (``loopback``, ``ipv4-mapped private``...)."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # drop any %scope
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = classify(embedded[1])
            return f"{embedded[0]} {inner}" if inner else None
        rules = _V6_RULES
    else:
        rules = _V4_RULES
    for network, reason in rules:
        if address in network:
            return reason
    if address.version == 6 and address not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return None if address.is_global else "reserved"


def parse_cidrs(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``--allow-private`` values (each may hold comma-separated CIDRs) as networks; ValueError names a bad one."""
    networks: list[IPNetwork] = []
    for item in values:
        for text in filter(None, (part.strip() for part in item.split(","))):
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"invalid CIDR {text!r} (expected e.g. 10.0.0.0/8 or fd00::/8)") from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outbound connections may reach. Immutable; share one per mode."""

    allow_private: tuple[IPNetwork, ...] = ()
    homelab: bool = False
    lan: bool = False

    def with_homelab(self) -> AddressPolicy:
        return self if self.homelab else replace(self, homelab=True)

    def with_lan(self) -> AddressPolicy:
        """Also RFC 1918 / ULA / CGNAT (for SSH hosts); still never loopback, link-local or metadata."""
        return self if self.lan else replace(self, lan=True)

    def _operator_allows(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            candidates[0] = ipaddress.IPv6Address(int(address))  # drop any %scope
            if address.ipv4_mapped is not None:
                candidates.append(address.ipv4_mapped)
        return any(c.version == n.version and c in n for c in candidates for n in self.allow_private)

    def refusal(self, address: IPAddress) -> str | None:
        """None when the policy allows ``address``, else a short reason (``loopback``, ``metadata``...)."""
        reason = classify(address)
        if reason is None or (self.allow_private and self._operator_allows(address)):
            return None
        kind = reason.rsplit(" ", 1)[-1]
        if (self.homelab and kind in _HOMELAB_OK) or (self.lan and kind in _LAN_OK):
            return None
        return reason

    def check(self, host: str, address: str) -> None:
        """Raise AddressNotAllowed unless ``address`` (IP text, ``%scope`` allowed) is allowed."""
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise AddressNotAllowed(host, address, "not an IP address") from None
        reason = self.refusal(parsed)
        if reason is not None:
            raise AddressNotAllowed(host, address, reason)


@dataclass(frozen=True)
class ResolvedAddress:
    host: str  # the host name that was asked for
    address: str  # IP text, to connect to
    port: int
    family: int


async def resolve_checked(
    host: str, port: int, policy: AddressPolicy, *, family: int = socket.AF_UNSPEC
) -> list[ResolvedAddress]:
    """Resolve ``host`` once and refuse it if ANY address is refused; else the addresses (deduplicated, in order).

    IP literals (``[::1]`` included) go through getaddrinfo too, so odd IPv4 forms such as ``127.1`` or
    ``2130706433`` are judged by the address they denote. Raises AddressNotAllowed or ResolveFailed.
    Callers outside aiohttp should bound it with a timeout.
    """
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, port, family=family, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise ResolveFailed(name, getattr(exc, "strerror", None) or str(exc)) from exc
    results: list[ResolvedAddress] = []
    seen: set[str] = set()
    for fam, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        policy.check(name, address)
        if address not in seen:
            seen.add(address)
            results.append(ResolvedAddress(name, address, port, int(fam)))
    if not results:
        raise ResolveFailed(name, "no addresses")
    return results


class GuardedResolver(AbstractResolver):
    """aiohttp resolver: connections go to the checked IPs, while SNI and certificates use the host name.

    Use with ``aiohttp.TCPConnector(resolver=GuardedResolver(p), socket_factory=guarded_socket_factory(p))``.
    What the caller of ``session.request()`` sees (aiohttp 3.14, verified by tests/unit/test_netguard.py):

    - a host name that resolves to a refused address: ``AddressNotAllowed`` itself, unwrapped (aiohttp
      wraps only OSError from resolvers);
    - an unknown host name: ``ResolveFailed`` itself, unwrapped;
    - an IP-literal host: aiohttp skips the resolver, so the socket factory refuses it, again raising
      ``AddressNotAllowed`` itself; legacy numeric forms (``127.1``, ``2130706433``) are refused earlier by
      aiohttp with ``aiohttp.InvalidUrlClientError``, and ``0x7f.0.0.1`` goes through this resolver.

    To be robust to other aiohttp versions, callers should still search ``__cause__`` / ``__context__`` /
    ``os_error`` for an ``AddressNotAllowed`` before treating an error as a generic upstream failure.
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


def guarded_socket_factory(policy: AddressPolicy) -> Callable[[AddrInfo], socket.socket]:
    """aiohttp ``socket_factory``: the last line of defence, checking the address actually dialled.

    aiohttp connects to IP-literal hosts without calling the resolver; this catches them. The refusal is
    raised as ``AddressNotAllowed`` (not an OSError), so it is not folded into a generic connection error
    and reaches the caller of ``session.request()`` as is. Caveat (aiohappyeyeballs 2.x): were the factory
    to refuse *every* address of a multi-address result, happy eyeballs would drop the exceptions and raise
    IndexError instead (still no connection). That cannot happen when it is paired with a GuardedResolver of
    the same policy, as aiohttp only bypasses the resolver for single IP literals.
    """

    def factory(addr_info: AddrInfo) -> socket.socket:
        family, sock_type, proto, _canon, sockaddr = addr_info
        address = str(sockaddr[0])
        policy.check(address, address)
        return socket.socket(family=family, type=sock_type, proto=proto)

    return factory
