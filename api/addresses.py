"""Where no hook may connect: cloud metadata services (they answer with the node's credentials),
link-local, unspecified and multicast addresses.

Hooks run in the tenant's own pods, so this is not the tenant boundary (a tenant's pod can
connect anywhere its network allows); it keeps a hook from carrying the node's credentials into
a backup's logs by mistake. It is applied twice: to the host a hook names, when the invoker is
validated, and to every address that host resolves to, right before the hook connects
(``agent.hooks``), so a DNS name, or a decimal, octal or hexadecimal form of a metadata address,
is caught where a literal check would miss it.
"""

from __future__ import annotations

import ipaddress

METADATA_HOSTS = ("metadata", "metadata.google.internal", "metadata.azure.com")
METADATA_ADDRESSES = (ipaddress.ip_address("fd00:ec2::254"),)


def forbidden_address(text: str) -> str | None:
    """Why an IP address (as ``getaddrinfo`` gives it) may not be called; None if it may."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone goes
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata service"
    if address.is_link_local:
        return "link-local (where cloud metadata services answer)"
    if address.is_unspecified or address.is_multicast:
        return "not an address a hook can call"
    return None


def forbidden_host(host: str) -> str | None:
    """Why a host as written in a hook may not be called (a metadata service's name or a
    forbidden literal address); None if it may, or if only resolving it can tell."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in METADATA_HOSTS:
        return "a cloud metadata service"
    return forbidden_address(name)
