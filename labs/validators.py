"""Django field validators backed by the dom0 layer's name checks.

The same allow-lists guard the database and the commands, so a value the
admin accepts is always one a command can take. The jump host of an IP pool,
shown to students in an `ssh -J` line, gets its own strict pattern.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

from labs.dom0 import names
from labs.dom0.errors import InvalidName


@deconstructible
class Dom0Name:
    """Validate with `labs.dom0.names.<check>`; blank values pass when optional."""

    def __init__(self, check: str, optional: bool = False) -> None:
        self.check = check
        self.optional = optional

    def __call__(self, value: str) -> None:
        if self.optional and not value:
            return
        try:
            getattr(names, self.check)(value)
        except InvalidName as e:
            raise ValidationError(str(e)) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dom0Name) and (self.check, self.optional) == (other.check, other.optional)


# `ssh -J` takes [user@]host[:port]. Only plain names and IPv4 addresses: no
# spaces, no leading '-' (an option), no ssh:// URL, no second hop (',').
_JUMP_HOST = re.compile(
    r"(?:[a-z_][a-z0-9_.-]{0,31}@)?"
    r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)"
    r"(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}))?"
)


def validate_jump_host(value: str) -> None:
    """A jump host for `ssh -J`: host, user@host, host:port or user@host:port (lower case)."""
    if value and (len(value) > 200 or not _JUMP_HOST.fullmatch(value)):
        raise ValidationError(
            _("Enter host, user@host or host:port, for example student@gw.example.edu or gw.example.edu:2222."),
            code="invalid",
        )
