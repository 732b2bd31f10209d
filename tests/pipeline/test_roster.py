"""parse_roster: one student per line, every bad line reported with its number and field."""

from __future__ import annotations

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
