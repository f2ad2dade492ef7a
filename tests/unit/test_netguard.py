"""The SSRF address policy: classification table, allow-list and homelab modes, resolution, aiohttp wiring.

Everything stays on loopback: names other than ``localhost`` are answered by a fake ``socket.getaddrinfo``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import trustme
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from vault_proxy.netguard import (
    AddressNotAllowed,
    AddressPolicy,
    GuardedResolver,
    ResolvedAddress,
    ResolveFailed,
    guarded_socket_factory,
    parse_cidrs,
    resolve_checked,
)

STRICT = AddressPolicy()
HOMELAB = STRICT.with_homelab()
LOOPBACK_OK = AddressPolicy(parse_cidrs(["127.0.0.0/8", "::1/128"]))

TABLE = [
    # globally routable
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("2606:4700:4700::1111", None),
    ("2001:4860:4860::8888", None),
    # IPv4 special ranges
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.255", "cgnat"),
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    ("192.0.0.192", "metadata"),
    ("192.0.0.1", "reserved"),
    ("192.0.0.9", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.88.99.1", "reserved"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    # just outside the ranges
    ("172.32.0.1", None),
    ("100.128.0.1", None),
    ("11.0.0.1", None),
    ("198.20.0.1", None),
    # IPv6 special ranges
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fd00:ec2::254", "metadata"),
    ("fd20:ce::254", "metadata"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("5f00::1", "reserved"),  # outside 2000::/3
    ("4000::1", "reserved"),
    ("64:ff9b:1::a00:1", "reserved"),  # local-use NAT64
    # IPv4 inside IPv6: the embedded address decides
    ("::ffff:8.8.8.8", None),
    ("::ffff:127.0.0.1", "ipv4-mapped loopback"),
    ("::ffff:10.0.0.1", "ipv4-mapped private"),
    ("::ffff:169.254.169.254", "ipv4-mapped metadata"),
    ("::ffff:0.0.0.0", "ipv4-mapped unspecified"),
    ("64:ff9b::8.8.8.8", None),
    ("64:ff9b::127.0.0.1", "nat64 loopback"),
    ("64:ff9b::169.254.169.254", "nat64 metadata"),
    ("2002:808:808::1", None),
    ("2002:7f00:1::1", "6to4 loopback"),
    ("2002:a9fe:a9fe::1", "6to4 metadata"),
    ("2002:c0a8:101::1", "6to4 private"),
    ("::127.0.0.1", "ipv4-compatible"),
    ("::8.8.8.8", "ipv4-compatible"),
    ("::ffff:0:808:808", "reserved"),  # SIIT "IPv4-translated"
]


@pytest.mark.parametrize(("address", "reason"), TABLE)
def test_classification_table(address: str, reason: str | None) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) == reason


HOMELAB_ALLOWED = ["127.0.0.1", "10.0.0.1", "172.20.1.1", "192.168.0.10", "100.64.1.1", "::1", "fd00::5",
                   "::ffff:192.168.1.1", "::ffff:127.0.0.1", "64:ff9b::10.0.0.1", "8.8.8.8"]  # fmt: skip
HOMELAB_REFUSED = ["169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254", "fd20:ce::254", "100.100.100.200",
                   "168.63.129.16", "::ffff:169.254.169.254", "64:ff9b::169.254.169.254", "2002:a9fe:a9fe::1",
                   "0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "192.0.2.1", "::127.0.0.1"]  # fmt: skip


@pytest.mark.parametrize("address", HOMELAB_ALLOWED)
def test_homelab_allows_private_ranges(address: str) -> None:
    assert HOMELAB.refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", HOMELAB_REFUSED)
def test_homelab_never_allows_link_local_metadata_or_odd_ranges(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert HOMELAB.refusal(ip) == STRICT.refusal(ip) is not None


def test_with_homelab_keeps_allow_list_and_is_idempotent() -> None:
    policy = AddressPolicy(parse_cidrs(["169.254.0.0/16"]))
    assert policy.with_homelab() == AddressPolicy(policy.allow_private, homelab=True)
    assert HOMELAB.with_homelab() is HOMELAB
    assert policy.with_homelab().refusal(ipaddress.ip_address("169.254.169.254")) is None


def test_allow_private_allows_exactly_the_listed_networks() -> None:
    policy = AddressPolicy(parse_cidrs(["10.1.0.0/16", "127.0.0.0/8", "fd00::/8"]))
    assert policy.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert policy.refusal(ipaddress.ip_address("10.2.0.1")) == "private"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("::1")) == "loopback"  # IPv4 loopback listed, not IPv6
    assert policy.refusal(ipaddress.ip_address("fd00:ec2::254")) is None  # explicitly listed wins
    assert policy.refusal(ipaddress.ip_address("::ffff:10.1.0.9")) is None  # mapped form checked as IPv4
    assert policy.refusal(ipaddress.ip_address("::ffff:10.2.0.9")) == "ipv4-mapped private"
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "metadata"


def test_allow_private_can_open_metadata_only_explicitly() -> None:
    assert AddressPolicy(parse_cidrs(["169.254.169.254/32"])).refusal(ipaddress.ip_address("169.254.169.254")) is None


def test_parse_cidrs() -> None:
    assert parse_cidrs(["10.0.0.0/8, 192.168.1.5", " ", "fd00::/8"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.5/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert parse_cidrs(["10.1.2.3/8"]) == (ipaddress.ip_network("10.0.0.0/8"),)  # host bits tolerated
    assert parse_cidrs([]) == ()
    for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8x", "::1/129", "10.0.0.0/8/8"]:
        with pytest.raises(ValueError, match="invalid CIDR"):
            parse_cidrs(["10.0.0.0/8", bad])


def test_check_raises_with_loggable_message() -> None:
    with pytest.raises(AddressNotAllowed) as info:
        STRICT.check("internal.example", "10.0.0.7")
    assert (info.value.host, info.value.address, info.value.reason) == ("internal.example", "10.0.0.7", "private")
    assert str(info.value) == "internal.example resolves to 10.0.0.7 (private), which is not allowed"
    with pytest.raises(AddressNotAllowed, match="link-local"):
        STRICT.check("x", "fe80::1%lo")  # scoped IPv6 text
    with pytest.raises(AddressNotAllowed, match="not an IP address"):
        STRICT.check("x", "not-an-ip")
    STRICT.check("x", "8.8.8.8")


# --- resolution -----------------------------------------------------------------------------------------

FAKE_DNS = {
    "public.test": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"],
    "rebind.test": ["93.184.216.34", "127.0.0.1"],
    "homelab.test": ["192.168.1.20"],
    "meta.test": ["169.254.169.254"],
}


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer the FAKE_DNS names (and fail ``unknown.test``) without touching the network."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host == "unknown.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host in FAKE_DNS:
            out = []
            for ip in FAKE_DNS[host]:
                fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
                if family in (0, fam):
                    addr = (ip, port, 0, 0) if fam == socket.AF_INET6 else (ip, port)
                    out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr))
            return out
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1",
                                  "017700000001", "[::1]", "::1", "::ffff:127.0.0.1"])  # fmt: skip
async def test_loopback_in_any_spelling_is_refused(host: str) -> None:
    with pytest.raises(AddressNotAllowed) as info:
        await resolve_checked(host, 443, STRICT)
    assert info.value.reason in ("loopback", "ipv4-mapped loopback")
    assert info.value.host == host.strip("[]")


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1"])
async def test_odd_ipv4_forms_resolve_to_what_they_denote(host: str) -> None:
    assert await resolve_checked(host, 80, LOOPBACK_OK) == [ResolvedAddress(host, "127.0.0.1", 80, socket.AF_INET)]


async def test_bracketed_ipv6_literal() -> None:
    assert await resolve_checked("[::1]", 8443, LOOPBACK_OK) == [ResolvedAddress("::1", "::1", 8443, socket.AF_INET6)]
    assert await resolve_checked("[2606:4700::1111]", 443, STRICT) == [
        ResolvedAddress("2606:4700::1111", "2606:4700::1111", 443, socket.AF_INET6)
    ]


async def test_localhost_refused_unless_allowed() -> None:
    with pytest.raises(AddressNotAllowed, match="loopback"):
        await resolve_checked("localhost", 80, STRICT)
    found = await resolve_checked("localhost", 80, LOOPBACK_OK)
    assert found and all(ipaddress.ip_address(f.address).is_loopback for f in found)
    assert (await resolve_checked("localhost", 80, HOMELAB))[0].host == "localhost"


async def test_addresses_deduplicated_in_order_and_family_respected(fake_dns: None) -> None:
    found = await resolve_checked("public.test", 443, STRICT)
    assert [(f.address, f.family) for f in found] == [
        ("93.184.216.34", socket.AF_INET),
        ("2606:2800:220:1::1", socket.AF_INET6),
    ]
    only_v6 = await resolve_checked("public.test", 443, STRICT, family=socket.AF_INET6)
    assert [f.address for f in only_v6] == ["2606:2800:220:1::1"]


async def test_any_refused_address_refuses_the_host(fake_dns: None) -> None:
    with pytest.raises(AddressNotAllowed) as info:
        await resolve_checked("rebind.test", 443, STRICT)
    assert (info.value.host, info.value.address, info.value.reason) == ("rebind.test", "127.0.0.1", "loopback")


async def test_homelab_resolution(fake_dns: None) -> None:
    with pytest.raises(AddressNotAllowed, match="private"):
        await resolve_checked("homelab.test", 80, STRICT)
    assert [f.address for f in await resolve_checked("homelab.test", 80, HOMELAB)] == ["192.168.1.20"]
    with pytest.raises(AddressNotAllowed, match="metadata"):
        await resolve_checked("meta.test", 80, HOMELAB)


@pytest.mark.parametrize("host", ["unknown.test", "bad..name", "x" * 300, "nul\x00host"])
async def test_resolution_failure(fake_dns: None, host: str) -> None:
    with pytest.raises(ResolveFailed) as info:
        await resolve_checked(host, 443, STRICT)
    assert info.value.host == host and host in str(info.value)


# --- properties -----------------------------------------------------------------------------------------

# Where Python 3.11's is_global says "global" but the policy refuses: multicast and most of 192.0.0.0/24
# (ipaddress is too lax there), the 6to4 relay anycast and the Azure WireServer (on purpose).
STRICTER_THAN_IS_GLOBAL = parse_cidrs(["224.0.0.0/4", "192.0.0.0/24", "192.88.99.0/24", "168.63.129.16/32"])
ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address) | st.sampled_from(
    [ipaddress.IPv4Address(a) for a, _ in TABLE if ":" not in a]
)

# Random IPv6 addresses, half of them inside the prefixes that matter.
ipv6s = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address) | st.sampled_from(
    parse_cidrs(
        ["::/96", "::ffff:0:0/96", "64:ff9b::/96", "2002::/16", "fe80::/10", "fc00::/7", "2001::/23", "ff00::/8"]
    )
).flatmap(lambda net: st.integers(int(net.network_address), int(net.broadcast_address)).map(ipaddress.IPv6Address))


@given(ipv4s)
def test_ipv4_allowed_iff_global(ip: ipaddress.IPv4Address) -> None:
    expected_ok = ip.is_global and not any(ip in net for net in STRICTER_THAN_IS_GLOBAL)
    assert (STRICT.refusal(ip) is None) == expected_ok


@given(ipv4s)
def test_ipv4_in_ipv6_forms_agree_with_the_ipv4(ip: ipaddress.IPv4Address) -> None:
    reason = STRICT.refusal(ip)
    forms = {
        "ipv4-mapped": ipaddress.IPv6Address(f"::ffff:{ip}"),
        "nat64": ipaddress.IPv6Address(f"64:ff9b::{ip}"),
        "6to4": ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80) | 1),
    }
    for name, form in forms.items():
        assert STRICT.refusal(form) == (f"{name} {reason}" if reason else None)
        assert (HOMELAB.refusal(form) is None) == (HOMELAB.refusal(ip) is None)


@given(ipv6s)
def test_allowed_ipv6_is_global_unicast_or_leads_to_a_global_ipv4(ip: ipaddress.IPv6Address) -> None:
    if STRICT.refusal(ip) is None:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        assert ip in ipaddress.ip_network("2000::/3") or (embedded is not None and embedded.is_global)
        assert embedded is not None or ip.is_global


@given(ipv4s | ipv6s)
def test_homelab_only_ever_adds_loopback_private_cgnat(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    strict, homelab = STRICT.refusal(ip), HOMELAB.refusal(ip)
    if strict is None:
        assert homelab is None
    elif homelab is None:
        assert strict.split()[-1] in ("loopback", "private", "cgnat")
    else:
        assert homelab == strict
    if ip.version == 4 and ip in ipaddress.ip_network("169.254.0.0/16"):
        assert homelab is not None


@given(ipv4s, st.integers(8, 32), st.booleans())
def test_inside_allow_private_is_allowed(ip: ipaddress.IPv4Address, prefix: int, homelab: bool) -> None:
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    policy = AddressPolicy((network,), homelab)
    assert policy.refusal(ip) is None
    assert policy.refusal(ipaddress.IPv6Address(f"::ffff:{ip}")) is None


# --- aiohttp wiring -------------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[str]]]:
    """A plain HTTP server on 127.0.0.1; yields its port and the paths it served."""
    served: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1], served
    await runner.cleanup()


class CountingResolver(GuardedResolver):
    calls = 0

    async def resolve(self, host, port=0, family=socket.AF_INET):  # type: ignore[override]
        self.calls += 1
        return await super().resolve(host, port, family)


def guarded_session(policy: AddressPolicy, **connector_args) -> tuple[aiohttp.ClientSession, CountingResolver]:
    resolver = CountingResolver(policy)
    connector = aiohttp.TCPConnector(resolver=resolver, socket_factory=guarded_socket_factory(policy), **connector_args)
    return aiohttp.ClientSession(connector=connector), resolver


async def test_guarded_resolver_returns_numeric_results() -> None:
    results = await GuardedResolver(LOOPBACK_OK).resolve("localhost", 8080, socket.AF_INET)
    assert results == [
        {"hostname": "localhost", "host": "127.0.0.1", "port": 8080, "family": socket.AF_INET, "proto": 0,
         "flags": socket.AI_NUMERICHOST}
    ]  # fmt: skip
    with pytest.raises(AddressNotAllowed):
        await GuardedResolver(STRICT).resolve("localhost", 8080, socket.AF_INET)


async def test_session_hostname_refused_raises_address_not_allowed_unwrapped(server) -> None:
    port, served = server
    session, resolver = guarded_session(STRICT)
    async with session:
        with pytest.raises(AddressNotAllowed) as info:
            await session.get(f"http://localhost:{port}/secret")
    assert type(info.value) is AddressNotAllowed  # not wrapped in ClientConnectorError
    assert info.value.host == "localhost" and info.value.reason == "loopback"
    assert resolver.calls == 1 and served == []


async def test_session_hostname_allowed_with_allow_private(server) -> None:
    port, served = server
    session, resolver = guarded_session(LOOPBACK_OK)
    async with session, session.get(f"http://localhost:{port}/ok") as response:
        assert response.status == 200 and await response.text() == "hello"
    assert served == ["/ok"] and resolver.calls == 1


async def test_session_ip_literal_refused_by_socket_factory(server) -> None:
    port, served = server
    session, resolver = guarded_session(STRICT)
    async with session:
        with pytest.raises(AddressNotAllowed) as info:
            await session.get(f"http://127.0.0.1:{port}/secret")
        with pytest.raises(AddressNotAllowed, match="ipv4-mapped loopback"):
            await session.get(f"http://[::ffff:127.0.0.1]:{port}/secret")
        with pytest.raises(AddressNotAllowed, match="loopback"):
            await session.get(f"http://[::1]:{port}/secret")
    assert type(info.value) is AddressNotAllowed
    assert (info.value.host, info.value.address, info.value.reason) == ("127.0.0.1", "127.0.0.1", "loopback")
    assert resolver.calls == 0 and served == []  # aiohttp bypassed the resolver: the factory caught it


async def test_session_ip_literal_allowed_with_allow_private(server) -> None:
    port, served = server
    session, _ = guarded_session(LOOPBACK_OK)
    async with session, session.get(f"http://127.0.0.1:{port}/lit") as response:
        assert response.status == 200
    assert served == ["/lit"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.1", aiohttp.InvalidUrlClientError),  # aiohttp 3.14 rejects legacy numeric literals itself
        ("2130706433", aiohttp.InvalidUrlClientError),
        ("0177.0.0.1", aiohttp.InvalidUrlClientError),
        ("0x7f.0.0.1", AddressNotAllowed),  # not numeric to aiohttp: goes through our resolver
    ],
)
async def test_session_odd_literals_never_connect(server, host: str, expected: type[Exception]) -> None:
    port, served = server
    session, _ = guarded_session(STRICT)
    async with session:
        with pytest.raises(expected):
            await session.get(f"http://{host}:{port}/secret")
    assert served == []


async def test_session_unknown_host_raises_resolve_failed_unwrapped(fake_dns: None) -> None:
    session, _ = guarded_session(STRICT)
    async with session:
        with pytest.raises(ResolveFailed) as info:
            await session.get("http://unknown.test/")
    assert type(info.value) is ResolveFailed and "unknown.test" in str(info.value)


async def test_session_rebinding_name_refused(fake_dns: None) -> None:
    session, _ = guarded_session(STRICT)
    async with session:
        with pytest.raises(AddressNotAllowed, match="rebind.test resolves to 127.0.0.1"):
            await session.get("http://rebind.test/")


async def test_tls_goes_to_the_checked_ip_but_verifies_the_hostname() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)  # no IP SAN: only the name can verify
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment,return-value]
    app = web.Application()

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(text="tls")

    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    port = runner.addresses[0][1]
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    try:
        session, resolver = guarded_session(LOOPBACK_OK, ssl=client_ctx)
        async with session, session.get(f"https://localhost:{port}/") as response:
            assert await response.text() == "tls"
        assert sni == ["localhost"] and resolver.calls == 1
    finally:
        await runner.cleanup()


def test_socket_factory_checks_before_creating_a_socket() -> None:
    factory: Callable = guarded_socket_factory(STRICT)
    with pytest.raises(AddressNotAllowed, match="metadata"):
        factory((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("169.254.169.254", 80)))
    sock = factory((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("2606:4700::1111", 443, 0, 0)))
    try:
        assert sock.family == socket.AF_INET6 and sock.type == socket.SOCK_STREAM
    finally:
        sock.close()
