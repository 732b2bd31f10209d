"""Addresses for new guests: IPs from a pool (NetBox-style IPSet arithmetic) and MACs.

Callers hold the pool row locked (select_for_update) while they allocate and
insert, so two batches on one pool never see the same free address; the
database's unique constraints are the last line of defence.
"""

from __future__ import annotations

import secrets

import netaddr
from django.utils.translation import gettext as _

from labs.dom0 import names
from labs.models import Guest, IpPool
from labs.services.errors import ServiceError


def free_ips(pool: IpPool) -> netaddr.IPSet:
    used = netaddr.IPSet(Guest.objects.filter(pool=pool).values_list("ip", flat=True))
    return pool.usable_set() - used


def allocate_ips(pool: IpPool, count: int) -> list[str]:
    """The `count` lowest free addresses, or a ServiceError saying how many are free."""
    free = free_ips(pool)
    if free.size < count:
        raise ServiceError(
            _("The pool %(pool)s has %(free)d free address(es); the batch needs %(n)d.")
            % {"pool": pool.name, "free": free.size, "n": count},
            field="pool",
        )
    result: list[str] = []
    # Walk ranges rather than the set itself: a /16 pool need not be expanded.
    for ip_range in free.iter_ipranges():
        for ip in ip_range:
            result.append(str(ip))
            if len(result) == count:
                return result
    return result


def allocate_macs(pool: IpPool, count: int) -> list[str]:
    """`count` unused MACs under the pool's prefix, random in the remaining octets.

    Random rather than sequential so a MAC freed by a teardown is unlikely to
    be reused soon (switch and DHCP caches outlive guests).
    """
    prefix = names.mac_prefix(pool.mac_prefix)
    free_octets = 6 - len(prefix.split(":"))
    space = 256**free_octets
    taken = set(Guest.objects.filter(mac__startswith=prefix + ":").values_list("mac", flat=True))
    if space - len(taken) < count:
        raise ServiceError(
            _("The MAC prefix %(prefix)s of pool %(pool)s has no room for %(n)d more guests.")
            % {"prefix": prefix, "pool": pool.name, "n": count},
            field="pool",
        )
    result: list[str] = []
    while len(result) < count:
        suffix = secrets.randbelow(space)
        octets = [f"{(suffix >> (8 * i)) & 0xFF:02x}" for i in reversed(range(free_octets))]
        mac = ":".join([prefix, *octets])
        if mac not in taken:
            taken.add(mac)
            result.append(mac)
    return result
