"""IpPool.usable_set() never offers network, broadcast, gateway or reserved addresses; clean() names bad fields."""

from __future__ import annotations

import netaddr
import pytest
from django.core.exceptions import ValidationError

from labs.models import IpPool


def pool(network: str, gateway: str, first: str, last: str, reserved: str = "") -> IpPool:
    return IpPool(name="p", network=network, gateway=gateway, first_ip=first, last_ip=last, reserved=reserved)


def addresses(p: IpPool) -> list[str]:
    return [str(ip) for ip in p.usable_set()]


def test_slash24_full_range_drops_network_broadcast_and_gateway():
    usable = pool("10.10.0.0/24", "10.10.0.1", "10.10.0.0", "10.10.0.255").usable_set()
    assert usable.size == 253
    for never in ("10.10.0.0", "10.10.0.255", "10.10.0.1"):
        assert netaddr.IPAddress(never) not in usable
    assert netaddr.IPAddress("10.10.0.2") in usable
    assert netaddr.IPAddress("10.10.0.254") in usable


def test_only_the_first_to_last_range_is_offered():
    p = pool("10.10.0.0/24", "10.10.0.1", "10.10.0.100", "10.10.0.104")
    assert addresses(p) == ["10.10.0.100", "10.10.0.101", "10.10.0.102", "10.10.0.103", "10.10.0.104"]


def test_gateway_inside_the_range_is_skipped():
    p = pool("192.168.5.0/24", "192.168.5.20", "192.168.5.19", "192.168.5.21")
    assert addresses(p) == ["192.168.5.19", "192.168.5.21"]


def test_reserved_addresses_and_ranges_are_skipped():
    # Commas, newlines and a-b ranges may be mixed, as the help text promises.
    p = pool("10.0.0.0/24", "10.0.0.1", "10.0.0.10", "10.0.0.20", reserved="10.0.0.11, 10.0.0.13-10.0.0.15\n10.0.0.20")
    assert addresses(p) == ["10.0.0.10", "10.0.0.12", "10.0.0.16", "10.0.0.17", "10.0.0.18", "10.0.0.19"]


def test_reserved_addresses_outside_the_range_change_nothing():
    p = pool("10.0.0.0/24", "10.0.0.1", "10.0.0.10", "10.0.0.12", reserved="10.0.0.200, 172.16.0.1")
    assert addresses(p) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]


def test_slash30_has_one_address_left_after_the_gateway():
    p = pool("10.0.0.0/30", "10.0.0.1", "10.0.0.0", "10.0.0.3")
    assert addresses(p) == ["10.0.0.2"]


def test_slash31_point_to_point_has_no_network_or_broadcast():
    # RFC 3021: both addresses of a /31 are hosts; one is the gateway.
    p = pool("10.0.0.0/31", "10.0.0.0", "10.0.0.0", "10.0.0.1")
    assert addresses(p) == ["10.0.0.1"]


def test_slash32_holding_only_the_gateway_offers_nothing():
    assert addresses(pool("10.0.0.7/32", "10.0.0.7", "10.0.0.7", "10.0.0.7")) == []


def test_fully_reserved_pool_offers_nothing():
    p = pool("10.0.0.0/29", "10.0.0.1", "10.0.0.2", "10.0.0.6", reserved="10.0.0.2-10.0.0.6")
    assert p.usable_set().size == 0


def test_a_good_pool_is_clean():
    pool("10.10.0.0/24", "10.10.0.1", "10.10.0.10", "10.10.0.250", reserved="10.10.0.53").clean()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"network": "10.10.0.5/24"}, "network"),  # host bits set
        ({"network": "10.10.0.0/33"}, "network"),
        ({"network": "lab-net"}, "network"),
        ({"network": "fd00::/64"}, "network"),
        ({"gateway": "10.20.0.1"}, "gateway"),
        ({"first_ip": "10.9.255.255"}, "first_ip"),
        ({"last_ip": "10.10.1.0"}, "last_ip"),
        ({"first_ip": "10.10.0.200", "last_ip": "10.10.0.100"}, "last_ip"),
        ({"reserved": "10.10.0.300"}, "reserved"),
        ({"reserved": "10.10.0.9-10.10.0.3"}, "reserved"),
        ({"reserved": "10.10.0.9-"}, "reserved"),
    ],
)
def test_clean_names_the_bad_field(kwargs, field):
    values = {"network": "10.10.0.0/24", "gateway": "10.10.0.1", "first": "10.10.0.10", "last": "10.10.0.250"}
    p = pool(values["network"], values["gateway"], values["first"], values["last"])
    for name, value in kwargs.items():
        setattr(p, name, value)
    with pytest.raises(ValidationError) as e:
        p.clean()
    assert list(e.value.message_dict) == [field]


@pytest.mark.parametrize("field", ["gateway", "first_ip", "last_ip"])
def test_full_clean_reports_a_malformed_address_instead_of_crashing(db, field):
    values = {"gateway": "10.0.0.1", "first_ip": "10.0.0.10", "last_ip": "10.0.0.20", field: "10.0.0.999"}
    pool = IpPool(name="p", network="10.0.0.0/24", dns_domain="lab.example.edu", **values)
    with pytest.raises(ValidationError) as e:
        pool.full_clean()
    assert field in e.value.message_dict
