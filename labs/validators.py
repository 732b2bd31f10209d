"""Django field validators backed by the dom0 layer's name checks.

The same allow-lists guard the database and the commands, so a value the
admin accepts is always one a command can take.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

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
