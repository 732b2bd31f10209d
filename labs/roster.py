"""Parse the student roster an instructor pastes into the batch form.

One student per line: `username, full name, e-mail` (an optional header
line names the columns). Every problem is reported with its line number and
field, so the instructor can fix the whole paste at once; the caller creates
nothing while any error remains.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.translation import gettext as _

# Usernames become part of Xen domain names, LV names and hostnames, so they
# are held to the strictest of those alphabets (see labs/dom0/names.py).
USERNAME_RE = re.compile(r"[a-z][a-z0-9_.-]{0,29}")
# auth.User keeps first and last name in 150 characters each; we split on the
# first space, so 150 keeps both halves within their columns.
MAX_FULL_NAME = 150
HEADER_WORDS = {"username", "user", "login", "usuario", "usuário"}


@dataclass
class RosterEntry:
    line: int
    username: str
    full_name: str
    email: str

    @property
    def first_name(self) -> str:
        return self.full_name.split(" ", 1)[0] if self.full_name else ""

    @property
    def last_name(self) -> str:
        parts = self.full_name.split(" ", 1)
        return parts[1].strip() if len(parts) == 2 else ""


@dataclass
class RosterError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return _("Line %(line)d (%(field)s): %(message)s") % {
            "line": self.line,
            "field": self.field,
            "message": self.message,
        }


def _is_header(cells: list[str]) -> bool:
    return bool(cells) and cells[0].strip().lower() in HEADER_WORDS


def parse_roster(text: str) -> tuple[list[RosterEntry], list[RosterError]]:
    """Entries and errors; the entries are only usable when there are no errors."""
    entries: list[RosterEntry] = []
    errors: list[RosterError] = []
    seen: dict[str, int] = {}
    lines = text.lstrip("\ufeff").splitlines()
    if not any(line.strip() for line in lines):
        return [], [RosterError(1, "roster", _("The roster is empty: add one student per line."))]

    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            errors.append(RosterError(number, "line", _("Empty line: remove it or add a student.")))
            continue
        # One record per line: a quoted field may hold a comma, not a newline.
        cells = next(csv.reader([raw], skipinitialspace=True))
        if number == 1 and _is_header(cells):
            continue
        if len(cells) > 3:
            errors.append(
                RosterError(
                    number, "line", _("Too many columns (%(n)d): use username, full name, e-mail.") % {"n": len(cells)}
                )
            )
            continue
        username, full_name, email = (cell.strip() for cell in [*cells, "", ""][:3])
        line_errors = [
            *_username_errors(number, username, seen),
            *_name_errors(number, full_name),
            *_email_errors(number, email),
        ]
        errors += line_errors
        if not line_errors:
            entries.append(RosterEntry(number, username, full_name, email))
    return entries, errors


def _username_errors(number: int, username: str, seen: dict[str, int]) -> list[RosterError]:
    """A username must be valid and new to the roster; `seen` remembers where each was first."""
    if not USERNAME_RE.fullmatch(username):
        message = _(
            "%(name)r is not a valid username: use 1-30 lower-case letters, digits, '_', '.' or '-',"
            " starting with a letter."
        ) % {"name": username[:40]}
        return [RosterError(number, "username", message)]
    if username in seen:
        message = _("%(name)s is already on line %(other)d.") % {"name": username, "other": seen[username]}
        return [RosterError(number, "username", message)]
    seen[username] = number
    return []


def _name_errors(number: int, full_name: str) -> list[RosterError]:
    if len(full_name) > MAX_FULL_NAME:
        message = _("The name has %(n)d characters; the limit is %(max)d.") % {
            "n": len(full_name),
            "max": MAX_FULL_NAME,
        }
        return [RosterError(number, "full_name", message)]
    if any(ord(c) < 32 for c in full_name):
        return [RosterError(number, "full_name", _("The name contains control characters."))]
    return []


def _email_errors(number: int, email: str) -> list[RosterError]:
    if not email:
        return []
    try:
        EmailValidator()(email)
    except ValidationError:
        return [RosterError(number, "email", _("%(email)r is not a valid e-mail address.") % {"email": email[:80]})]
    return []
