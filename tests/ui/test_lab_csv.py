"""The lab's guest list as CSV, for the instructor's grading sheets, DNS or DHCP."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from labs.models import Guest
from tests.ui.conftest import set_state

# The lab page's 300-student lab, so both pages are measured on the same data.
from tests.ui.test_lab_pages import big_lab  # noqa: F401

HEADER = ["username", "full_name", "email", "vm", "hostname", "ip", "mac", "host", "state", "memory_mib"]


def _csv_url(lab) -> str:
    return reverse("lab_guests_csv", args=[lab.pk])


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


def test_columns_and_rows(client, ivy, lab, alice, alice_guest, bob_guest):
    User.objects.filter(pk=alice.pk).update(last_name="Liddell")
    set_state(alice_guest, "r")
    set_state(bob_guest, "", status=Guest.Status.FAILED)
    client.force_login(ivy)
    r = client.get(_csv_url(lab))
    assert r.status_code == 200
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"] == 'attachment; filename="net101-guests.csv"'
    assert _rows(r) == [
        HEADER,
        [
            "alice",
            "Alice Liddell",
            "alice@example.edu",
            "net101-alice",
            "net101-alice",
            "10.10.0.11",
            "00:16:3e:00:00:01",
            "dom0-a",
            "running",
            "256",
        ],
        [
            "bob",
            "Bob",
            "bob@example.edu",
            "net101-bob",
            "net101-bob",
            "10.10.0.12",
            "00:16:3e:00:00:02",
            "dom0-a",
            "failed",
            "256",
        ],
    ]


def test_link_on_the_lab_page(client, ivy, lab):
    client.force_login(ivy)
    body = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    assert f'href="{_csv_url(lab)}" download>Download CSV</a>' in body


def test_link_in_portuguese(client, ivy, lab):
    client.force_login(ivy)
    body = client.get(reverse("lab_detail", args=[lab.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    assert f'href="{_csv_url(lab)}" download>Baixar CSV</a>' in body


def test_empty_lab_has_the_header_only(client, ivy, lab):
    client.force_login(ivy)
    assert _rows(client.get(_csv_url(lab))) == [HEADER]


@pytest.mark.parametrize(
    ("first_name", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("Ana=Maria", "Ana=Maria"),
        ("João", "João"),
    ],
)
def test_formula_cells_are_escaped(client, ivy, lab, alice, alice_guest, first_name, cell):
    # Names come from rosters: a spreadsheet must not run one as a formula.
    User.objects.filter(pk=alice.pk).update(first_name=first_name, email=first_name)
    client.force_login(ivy)
    row = _rows(client.get(_csv_url(lab)))[1]
    assert row[1] == cell and row[2] == cell
    assert row[0] == "alice"


def test_tab_first_cell_is_escaped(client, ivy, lab, alice, alice_guest):
    User.objects.filter(pk=alice.pk).update(email="\t=1+1")
    client.force_login(ivy)
    assert _rows(client.get(_csv_url(lab)))[1][2] == "'\t=1+1"


def test_state_word_in_portuguese(client, ivy, lab, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(ivy)
    r = client.get(_csv_url(lab), HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert _rows(r)[0] == HEADER
    assert _rows(r)[1][8] == "em execução"


@pytest.mark.parametrize("who", ["charlie", "alice", "bob"])
def test_others_get_404(client, request, who, lab, alice_guest, bob_guest):
    client.force_login(request.getfixturevalue(who))
    assert client.get(_csv_url(lab)).status_code == 404


def test_admin_gets_the_csv(client, admin_user, lab, alice_guest):
    client.force_login(admin_user)
    assert [row[0] for row in _rows(client.get(_csv_url(lab)))] == ["username", "alice"]


@pytest.mark.usefixtures("big_lab")
def test_300_guests_all_exported_in_few_queries(client, ivy, lab, django_assert_max_num_queries):
    client.force_login(ivy)
    with django_assert_max_num_queries(6):
        r = client.get(_csv_url(lab))
    rows = _rows(r)
    assert len(rows) == 301
    assert [row[0] for row in rows[1:]] == [f"s{n:03d}" for n in range(300)]
