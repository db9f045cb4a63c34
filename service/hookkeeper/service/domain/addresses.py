"""Which network addresses a callback may reach (the SSRF guard's rule).

Checked on the addresses a host name resolves to, at connect time, so a name
that resolves to a public address at registration and to an internal one
later (DNS rebinding) is still refused.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints that are not covered by the generic ranges below
# (169.254.169.254 is link-local and 100.100.100.200 is in 100.64/10 already;
# listed anyway so the intent is explicit).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)


def forbidden_reason(address: IPAddress | str) -> str | None:
    """Why a callback must not connect to ``address``, or None when it may."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return forbidden_reason(mapped)
        if ip.teredo is not None:
            return "a Teredo tunnel address"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "a multicast, unspecified or reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None
