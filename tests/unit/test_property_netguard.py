"""Property tests: the SSRF classifier refuses every address Python's ``ipaddress`` says is not global.

Compared over random IPv4 and IPv6 addresses (and the ranges where the answers differ most) with the
``ipaddress`` properties: anything loopback, private, link-local, multicast, reserved, unspecified,
site-local or otherwise not ``is_global`` is refused — including when wrapped in an IPv6 form that leads
to an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``), written
with a zone index, or checked as text through ``AddressPolicy.check``. The relaxed policies (homelab for
``tls_skip_verify`` services, LAN for SSH and TCP sessions) only ever add the kinds they are meant to.
tests/unit/test_netguard.py holds the table of known ranges and further properties.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_proxy.netguard import AddressNotAllowed, AddressPolicy, classify

SETTINGS = settings(max_examples=200, deadline=None)
STRICT = AddressPolicy()
HOMELAB = STRICT.with_homelab()
LAN = STRICT.with_lan()
IPv4, IPv6 = ipaddress.IPv4Address, ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NON_GLOBAL_FLAGS = ("is_private", "is_loopback", "is_link_local", "is_multicast", "is_reserved", "is_unspecified")


def _within(*cidrs: str) -> st.SearchStrategy:
    nets = [ipaddress.ip_network(c) for c in cidrs]
    return st.sampled_from(nets).flatmap(
        lambda n: st.integers(int(n.network_address), int(n.broadcast_address)).map(type(n.network_address))
    )


ipv4s = st.integers(0, 2**32 - 1).map(IPv4) | _within(
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
    "100.100.100.200/30",
    "168.63.129.16/30",
)
ipv6s = st.integers(0, 2**128 - 1).map(IPv6) | _within(
    "::/96",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    "2000::/3",
    "3fff::/20",
)


def embedded_ipv4(ip: IPv6) -> IPv4 | None:
    """The IPv4 address an IPv6 form leads to, when it is one of the forms that embed one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64:
        return IPv4(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def not_global(ip) -> bool:
    """Python's own verdict, by every flag it has (``is_site_local`` too for IPv6)."""
    flags = NON_GLOBAL_FLAGS + (("is_site_local",) if ip.version == 6 else ())
    return not ip.is_global or any(getattr(ip, flag) for flag in flags)


@SETTINGS
@given(ipv4s)
def test_every_non_global_ipv4_is_refused_in_every_form(ip: IPv4) -> None:
    forms = [ip, IPv6(f"::ffff:{ip}"), IPv6(f"64:ff9b::{ip}"), IPv6((0x2002 << 112) | (int(ip) << 80) | 7)]
    if not_global(ip):
        for form in forms:
            assert STRICT.refusal(form) is not None, form
            with pytest.raises(AddressNotAllowed):
                STRICT.check("host", str(form))
    else:  # the IPv6 wrappings are judged by the IPv4 they lead to, not by their own prefix
        for form in forms[1:]:
            assert (STRICT.refusal(form) is None) == (STRICT.refusal(ip) is None), form


@SETTINGS
@given(ipv6s)
def test_every_non_global_ipv6_is_refused(ip: IPv6) -> None:
    inner = embedded_ipv4(ip)
    if inner is not None:  # judged by where it leads
        if not_global(inner):
            assert STRICT.refusal(ip) is not None
        return
    if not_global(ip):
        assert STRICT.refusal(ip) is not None, ip
    if STRICT.refusal(ip) is None:  # allowed: global unicast and global by Python's rules too
        assert ip in ipaddress.ip_network("2000::/3") and ip.is_global


@SETTINGS
@given(ipv6s, st.sampled_from(["eth0", "1", "lo", "x"]))
def test_a_zone_index_changes_nothing(ip: IPv6, zone: str) -> None:
    scoped = ipaddress.ip_address(f"{ip}%{zone}")
    assert classify(scoped) == classify(ip)
    refused = STRICT.refusal(ip) is not None
    try:
        STRICT.check("host", f"{ip}%{zone}")
    except AddressNotAllowed:
        assert refused
    else:
        assert not refused


@SETTINGS
@given(ipv4s | ipv6s)
def test_relaxed_policies_only_add_what_they_are_for(ip) -> None:
    strict = STRICT.refusal(ip)
    for policy, extra in ((HOMELAB, {"loopback", "private", "cgnat"}), (LAN, {"private", "cgnat"})):
        relaxed = policy.refusal(ip)
        if strict is None:
            assert relaxed is None
        elif relaxed is None:
            assert strict.split()[-1] in extra, (ip, strict)
        else:
            assert relaxed == strict
    target = embedded_ipv4(ip) if ip.version == 6 else ip
    if target is not None and (target.is_link_local or target in ipaddress.ip_network("100.100.100.200/32")):
        assert HOMELAB.refusal(ip) is not None and LAN.refusal(ip) is not None  # metadata/link-local: never
    if ip.version == 6 and embedded_ipv4(ip) is None and (ip.is_link_local or ip.is_loopback):
        assert HOMELAB.refusal(ip) is not None or ip.is_loopback
        assert LAN.refusal(ip) is not None


@SETTINGS
@given(st.text(max_size=20))
def test_check_refuses_anything_that_is_not_an_address(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        with pytest.raises(AddressNotAllowed, match="not an IP address"):
            STRICT.check("host", text)
