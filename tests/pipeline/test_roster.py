"""parse_roster: one student per record, every bad line reported with its number and field; files as spreadsheets
save them (delimiters, encodings)."""

from __future__ import annotations

import time

import pytest

from labs.roster import RosterFileError, decode_roster, sniff_delimiter
from labs.services import RosterEntry, parse_roster


def test_valid_roster_with_header_quotes_and_optional_columns():
    text = 'username, full name, e-mail\nalice,"Souza, Alice",alice@example.edu\nbob.b,Bob Builder\nc_3\n'
    entries, errors = parse_roster(text)
    assert errors == []
    assert entries == [
        RosterEntry(2, "alice", "Souza, Alice", "alice@example.edu"),
        RosterEntry(3, "bob.b", "Bob Builder", ""),
        RosterEntry(4, "c_3", "", ""),
    ]
    assert (entries[1].first_name, entries[1].last_name) == ("Bob", "Builder")


def test_every_bad_line_is_reported_with_line_and_field():
    text = "\n".join(
        [
            "alice,Alice,alice@example.edu",  # 1 ok
            "bob;rm -rf /,Bob,bob@example.edu",  # 2 shell characters
            "$(reboot),X,x@example.edu",  # 3 command substitution
            "Carla,Carla,carla@example.edu",  # 4 upper case
            "",  # 5 empty line
            "alice,Again,alice2@example.edu",  # 6 duplicate
            "dave," + "D" * 300 + ",dave@example.edu",  # 7 a 300-character name
            "erin,Erin,not-an-email",  # 8 bad e-mail
            "frank smith,Frank,frank@example.edu",  # 9 space in username
            "g" * 31 + ",Long,long@example.edu",  # 10 too long
            "hank,Hank,hank@example.edu,extra",  # 11 too many columns
        ]
    )
    entries, errors = parse_roster(text)
    found = {(e.line, e.field) for e in errors}
    assert found == {
        (2, "username"),
        (3, "username"),
        (4, "username"),
        (5, "line"),
        (6, "username"),
        (7, "full_name"),
        (8, "email"),
        (9, "username"),
        (10, "username"),
        (11, "line"),
    }
    messages = {e.line: e.message for e in errors}
    assert "already on line 1" in messages[6]
    assert "300 characters" in messages[7] and "150" in messages[7]
    assert "Empty line" in messages[5]
    assert str(errors[0]).startswith("Line 2 (username): ")
    # Only the good line came through, and the caller must not use it while errors remain.
    assert [e.username for e in entries] == ["alice"]


def test_empty_roster():
    entries, errors = parse_roster("\n  \n")
    assert entries == [] and [(e.line, e.field) for e in errors] == [(1, "roster")]


def test_header_only_counts_on_the_first_line():
    entries, errors = parse_roster("alice\nusername\n")
    assert [e.username for e in entries] == ["alice", "username"]
    assert errors == []


# Rosters as spreadsheets save them (issue 15).
EXCEL_PT_BR = "usuário;nome;e-mail\r\nana;Ana Conceição;ana@example.edu\r\nbeto;Lima, Roberto;\r\n"


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("alice,Alice,alice@example.edu\nbob,Bob\n", ","),
        ("ana;Souza, Ana;ana@example.edu\nbeto;Lima, Roberto;beto@example.edu\n", ";"),
        ("ana\tAna Souza\tana@example.edu\nbeto\tRoberto\n", "\t"),
        ("ana;Ana;ana@example.edu;;\n", ";"),  # empty trailing columns
        ("ana\nbeto\n", ","),  # one column: any will do
        ('alice,"Souza; Alice",a@example.edu\n', ","),
    ],
)
def test_the_delimiter_is_detected(text, delimiter):
    assert sniff_delimiter(text) == delimiter
    entries, errors = parse_roster(text)
    assert errors == [] and entries


def test_excel_pt_br_file_in_cp1252_is_read():
    text = decode_roster(EXCEL_PT_BR.encode("cp1252"))
    entries, errors = parse_roster(text)
    assert errors == []
    assert [(e.line, e.username, e.full_name, e.email) for e in entries] == [
        (2, "ana", "Ana Conceição", "ana@example.edu"),
        (3, "beto", "Lima, Roberto", ""),
    ]


@pytest.mark.parametrize(
    "data",
    [
        EXCEL_PT_BR.encode("utf-8"),
        EXCEL_PT_BR.encode("utf-8-sig"),
        EXCEL_PT_BR.encode("cp1252"),
        EXCEL_PT_BR.encode("latin-1"),
        EXCEL_PT_BR.replace(";", "\t").encode("utf-16"),  # Excel's "Unicode text"
    ],
)
def test_encodings(data):
    assert decode_roster(data).lstrip("\ufeff") == EXCEL_PT_BR.replace(";", "\t" if data[:2] == b"\xff\xfe" else ";")


def test_latin1_bytes_undefined_in_cp1252_still_decode():
    assert decode_roster(b"ana;Jo\x81o\n") == "ana;Jo\x81o\n"


@pytest.mark.parametrize(("data", "word"), [(b"PK\x03\x04rest", "xlsx"), (b"%PDF-1.4", "pdf")])
def test_a_workbook_is_named_as_such(data, word):
    with pytest.raises(RosterFileError, match=word):
        decode_roster(data)


def test_a_quoted_newline_is_reported_at_its_line_and_field():
    text = 'ana,Ana,ana@example.edu\nbeto,"Roberto\nLima",beto@example.edu\ncarla,Carla,\nc..d,Dee,\n'
    entries, errors = parse_roster(text)
    assert [(e.line, e.field) for e in errors] == [(2, "full_name"), (5, "username")]
    assert "runs to line 3" in errors[0].message
    # The lines after it keep their own numbers.
    assert [(e.line, e.username) for e in entries] == [(1, "ana"), (4, "carla")]


def test_an_unclosed_quote_is_reported_where_it_opens():
    entries, errors = parse_roster('ana,Ana\nbeto,"Roberto Lima,beto@example.edu\ncarla\n')
    assert [(e.line, e.field) for e in errors] == [(2, "full_name")]
    assert "runs to line 3" in errors[0].message


def test_two_dots_are_refused_as_a_username_not_as_the_short_name():
    entries, errors = parse_roster("a..b,Ab,\n")
    assert [(e.line, e.field) for e in errors] == [(1, "username")]
    assert "two dots in a row" in errors[0].message and "short name" not in errors[0].message


@pytest.mark.parametrize("text", ['",' * 8000, '"; "' * 4000, ",,," * 5333, "," * 200_000])
def test_hostile_text_is_read_quickly(text):
    # csv.Sniffer reads a short sample only (its expressions take seconds on 16 KB of '",'), and empty
    # trailing cells are dropped in one slice.
    started = time.perf_counter()
    parse_roster(text)
    assert time.perf_counter() - started < 1.5


def test_a_portuguese_header_is_skipped():
    entries, errors = parse_roster("Matrícula;Nome;E-mail\nana;Ana;ana@example.edu\n")
    assert errors == [] and [e.username for e in entries] == ["ana"]
