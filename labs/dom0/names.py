"""Name and value validation, done before any command is built.

Every value that reaches an argv list or a config file passes one of these
checks first. They are strict allow-lists: a name with spaces, quotes,
newlines, `;`, `$(...)`, `../` or a leading dash is refused, whatever the
command it was meant for would have done with it.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import InvalidName

# Xen domain names, hostnames, LV name stems: letters, digits, dash, dot and
# underscore; must start with a letter or digit (never a dash: it would read
# as an option). 48 keeps "vm-<name>.raiz" within LVM's limits.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_DNS_DOMAIN = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)")
_VG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
# Components separated by single slashes. (The first version, `/(?:[...]+/?)*`,
# let the regex engine split a run of letters in exponentially many ways: 24
# letters and a '!' took over a second to refuse, twice as long per letter.)
_PATH = re.compile(r"/(?:[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*/?)?")
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_MAC_PREFIX = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){0,4}")
_CRYPT = re.compile(r"\$[0-9a-z]+\$[A-Za-z0-9./$=,-]+")


def _refuse(kind: str, value: object, why: str) -> InvalidName:
    return InvalidName(f"invalid {kind} {value!r}: {why}")


def domain_name(value: str) -> str:
    """A Xen domain name, also used as LV name stem and config file name."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _refuse(
            "domain name", value, "use 1-48 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    if ".." in value:
        raise _refuse("domain name", value, "'..' is not allowed")
    return value


def volume_name(value: str) -> str:
    """An LVM logical volume name such as vm-web01.raiz."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,126}", value):
        raise _refuse(
            "volume name", value, "use letters, digits, '-', '_', '+' or '.', starting with a letter or digit"
        )
    if ".." in value or value.startswith("snapshot") or value.startswith("pvmove"):
        raise _refuse("volume name", value, "reserved by LVM")
    return value


def volume_group(value: str) -> str:
    if not isinstance(value, str) or not _VG.fullmatch(value) or ".." in value:
        raise _refuse("volume group", value, "use letters, digits, '-', '_', '+' or '.'")
    return value


def hostname(value: str) -> str:
    """An RFC 1123 host label (lower case)."""
    if not isinstance(value, str) or not _HOSTNAME.fullmatch(value):
        raise _refuse("hostname", value, "use 1-63 lower-case letters, digits or '-', not starting or ending with '-'")
    return value


def dns_domain(value: str) -> str:
    if not isinstance(value, str) or len(value) > 253 or not _DNS_DOMAIN.fullmatch(value):
        raise _refuse("DNS domain", value, "use dot-separated lower-case labels")
    return value


def abs_path(value: str) -> str:
    """An absolute path with no '..', spaces or shell characters."""
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        raise _refuse("path", value, "use an absolute path of letters, digits, '-', '_', '+', '.' and '/'")
    if any(part in ("..", ".") for part in value.split("/")):
        raise _refuse("path", value, "'.' and '..' components are not allowed")
    return value


def bridge(value: str) -> str:
    """A Linux network interface name such as xenbr0 (at most 15 characters)."""
    if not isinstance(value, str) or not _IFNAME.fullmatch(value) or ".." in value:
        raise _refuse("bridge", value, "use 1-15 letters, digits, '-', '_' or '.', starting with a letter or digit")
    return value


def mac(value: str) -> str:
    value = value.lower() if isinstance(value, str) else value
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise _refuse("MAC address", value, "use six hex pairs separated by ':'")
    if int(value[:2], 16) & 1:
        raise _refuse("MAC address", value, "a multicast address cannot be a guest NIC")
    return value


def mac_prefix(value: str) -> str:
    value = value.lower() if isinstance(value, str) else value
    if not isinstance(value, str) or not _MAC_PREFIX.fullmatch(value):
        raise _refuse("MAC prefix", value, "use one to five hex pairs separated by ':'")
    if int(value[:2], 16) & 1:
        raise _refuse("MAC prefix", value, "the multicast bit is set")
    return value


def ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise _refuse("IPv4 address", value, "not a dotted-quad address") from None


def memory_mb(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 16 <= value <= 4 * 1024 * 1024:
        raise _refuse("memory size", value, "use a whole number of MiB from 16")
    return value


def crypt_hash(value: str) -> str:
    if value and (not isinstance(value, str) or not _CRYPT.fullmatch(value)):
        raise _refuse("password hash", "<hidden>", "not a crypt(3) string")
    return value
