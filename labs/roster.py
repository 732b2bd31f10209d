"""Parse the student roster an instructor pastes or uploads into the batch form.

One student per record: `username, full name, e-mail` (an optional header
line names the columns). Spreadsheets save such files in their own ways, so
the delimiter (`,` `;` or tab) is detected, and a file is read as UTF-8 (with
or without a BOM), UTF-16 (Excel's "Unicode text") or Windows-1252/Latin-1
(Excel in pt-BR). Every problem is reported with its line number and field,
so the instructor can fix the whole paste at once; the caller creates nothing
while any error remains.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.translation import gettext as _

# Usernames become part of Xen domain names, LV names and hostnames, so they
# are held to the strictest of those alphabets (see labs/dom0/names.py), which
# also refuse two dots in a row.
USERNAME_RE = re.compile(r"(?!.*\.\.)[a-z][a-z0-9_.-]{0,29}")
# auth.User keeps first and last name in 150 characters each; we split on the
# first space, so 150 keeps both halves within their columns.
MAX_FULL_NAME = 150
# A first line whose first cell is one of these names the columns (English, and pt-BR spreadsheets).
HEADER_WORDS = {
    *("username", "user", "login"),
    *("usuario", "usuário", "nome de usuário", "nome de usuario", "matrícula", "matricula"),
}
# The delimiters spreadsheets write: ',' (English), ';' (where ',' is the decimal mark), tab (copied cells).
DELIMITERS = ",;\t"
# How much of the roster csv.Sniffer reads (its time grows with the square of it on hostile text).
SNIFF_CHARS = 1024
COLUMNS = ("username", "full_name", "email")
# Files that are not text: a workbook saved as is, or a PDF.
BINARY_MAGIC = {b"PK\x03\x04": "xlsx/ods", b"\xd0\xcf\x11\xe0": "xls", b"%PDF": "pdf"}


class RosterFileError(ValueError):
    """A roster file that cannot be read as text; the message says why, in the user's words."""


def decode_roster(data: bytes) -> str:
    """The text of an uploaded roster: UTF-8 (BOM or not), UTF-16 with a BOM, else Windows-1252, else Latin-1.

    Valid UTF-8 is almost never anything else, so it is tried first; Excel in
    pt-BR saves Windows-1252, whose few undefined bytes fall back to Latin-1.
    """
    for magic, kind in BINARY_MAGIC.items():
        if data.startswith(magic):
            raise RosterFileError(
                _(
                    "This file is a spreadsheet or document (%(kind)s), not CSV text: in the spreadsheet, use"
                    " Save as… and choose CSV."
                )
                % {"kind": kind}
            )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    else:
        encodings = ["utf-8-sig", "cp1252", "latin-1"]
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break
        return text
    raise RosterFileError(
        _("This file is not text in UTF-8, UTF-16 or Windows-1252 (Latin-1): save it again as CSV (UTF-8).")
    )


def sniff_delimiter(text: str) -> str:
    """The roster's delimiter: the one that puts a valid username first on most lines.

    csv.Sniffer alone goes wrong on `ana;Souza, Ana;ana@x.edu` (both ';' and
    ',' are consistent there); its pick only breaks ties, then ',' does.
    """
    sample = "\n".join(text[:16384].splitlines()[:50])
    try:
        # The Sniffer's regular expressions take seconds on some hostile text ('",' * 8000): a short sample.
        sniffed = csv.Sniffer().sniff(sample[:SNIFF_CHARS], delimiters=DELIMITERS).delimiter
    except csv.Error:  # one column, or lines of different lengths
        sniffed = ","
    order = [sniffed, *(d for d in DELIMITERS if d != sniffed)]

    def score(delimiter: str) -> int:
        rows = csv.reader(io.StringIO(sample), delimiter=delimiter, skipinitialspace=True)
        return sum(
            1 for cells in map(_trimmed, rows) if 0 < len(cells) <= 3 and USERNAME_RE.fullmatch(cells[0].strip())
        )

    scores = {d: score(d) for d in order}
    return max(order, key=lambda d: scores[d])  # max() keeps the first of equals


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


def _trimmed(cells: list[str]) -> list[str]:
    """The cells without a spreadsheet's empty trailing columns (`ana;Ana;;`)."""
    end = len(cells)
    while end and not cells[end - 1].strip():
        end -= 1
    return cells[:end]


def _records(text: str, delimiter: str) -> list[tuple[int, int, list[str]]]:
    """(first line, last line, cells) of each record; a quoted field may run over several lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    records: list[tuple[int, int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            records.append((start, reader.line_num, _trimmed(cells)))
            start = reader.line_num + 1
    except csv.Error:  # a NUL byte: no text editor writes one
        records.append((start, start, ["\x00"]))
    while records and not records[-1][2]:  # blank lines at the end
        records.pop()
    return records


def parse_roster(text: str) -> tuple[list[RosterEntry], list[RosterError]]:
    """Entries and errors; the entries are only usable when there are no errors."""
    entries: list[RosterEntry] = []
    errors: list[RosterError] = []
    seen: dict[str, int] = {}
    text = text.lstrip("\ufeff")
    records = _records(text, sniff_delimiter(text))
    if not records:
        return [], [RosterError(1, "roster", _("The roster is empty: add one student per line."))]

    for number, last, cells in records:
        if number == 1 and _is_header(cells):
            continue
        line_errors = _record_errors(number, last, cells, seen)
        errors += line_errors
        if not line_errors:
            username, full_name, email = (cell.strip() for cell in [*cells, "", ""][:3])
            entries.append(RosterEntry(number, username, full_name, email))
    return entries, errors


def _record_errors(number: int, last: int, cells: list[str], seen: dict[str, int]) -> list[RosterError]:
    if not cells:
        return [RosterError(number, "line", _("Empty line: remove it or add a student."))]
    if len(cells) > 3:
        message = _("Too many columns (%(n)d): use username, full name, e-mail.") % {"n": len(cells)}
        return [RosterError(number, "line", message)]
    broken = next((i for i, cell in enumerate(cells) if "\n" in cell or "\r" in cell), None)
    if broken is not None:
        message = _(
            "A quote opened on this line encloses a line break, so this record runs to line %(last)d: close"
            " the quote on the same line."
        ) % {"last": last}
        return [RosterError(number, COLUMNS[broken], message)]
    username, full_name, email = (cell.strip() for cell in [*cells, "", ""][:3])
    return [
        *_username_errors(number, username, seen),
        *_name_errors(number, full_name),
        *_email_errors(number, email),
    ]


def _username_errors(number: int, username: str, seen: dict[str, int]) -> list[RosterError]:
    """A username must be valid and new to the roster; `seen` remembers where each was first."""
    if not USERNAME_RE.fullmatch(username):
        if ".." in username:
            message = _("%(name)r is not a valid username: it has two dots in a row.") % {"name": username[:40]}
        else:
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
