"""Every CSV export also "for Excel" (issue 15): a UTF-8 BOM, ';' between cells, decimals with ','."""

from __future__ import annotations

import base64
import csv
import io
import re

from django.contrib.auth.models import User
from django.urls import reverse

from labs.models import Lab
from tests.ui.batch_helpers import create_via_form
from tests.ui.test_usage_pages import busy_lab, reported  # noqa: F401


def _excel_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8, not cp1252
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))


def test_the_vm_list_for_excel(client, ivy, lab, alice, alice_guest):
    User.objects.filter(pk=alice.pk).update(last_name="Conceição")
    client.force_login(ivy)
    page = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    url = reverse("lab_guests_csv", args=[lab.pk])
    assert f'href="{url}"' in page and f'href="{url}?for=excel"' in page and "CSV for Excel" in page
    plain = client.get(url)
    assert not plain.content.startswith(b"\xef\xbb\xbf") and b"," in plain.content.splitlines()[0]
    r = client.get(url + "?for=excel")
    assert r["Content-Disposition"] == 'attachment; filename="net101-guests-excel.csv"'
    rows = _excel_rows(r.content)
    assert rows[0][:3] == ["username", "full_name", "email"]
    assert rows[1][:2] == ["alice", "Alice Conceição"]
    assert len(rows[1]) == len(rows[0])


def test_the_usage_report_for_excel_has_decimal_commas(client, ivy, reported, lab):  # noqa: F811
    client.force_login(ivy)
    url = reverse("lab_usage_csv", args=[lab.pk])
    assert f'href="{url}?for=excel"' in client.get(reverse("lab_usage", args=[lab.pk])).content.decode()
    rows = {row[0]: row for row in _excel_rows(client.get(url + "?for=excel").content)[1:]}
    assert rows["alice"][6] == "1,50" and rows["alice"][5] == "256"
    # The plain form keeps its points.
    plain = {row[0]: row for row in csv.reader(io.StringIO(client.get(url).content.decode()))}
    assert plain["alice"][6] == "1.50"


def test_new_passwords_for_excel(client, ivy, template, pool, host):
    client.force_login(ivy)
    data = {"name": "Redes", "slug": "redes", "template": template.pk, "pool": pool.pk, "memory_mb": "256"}
    body = create_via_form(client, {**data, "roster_text": "ana,Ana\nbeto,Beto\n"}, follow=True).content.decode()
    assert Lab.objects.filter(slug="redes").exists()
    match = re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)" download="redes-accounts-excel.csv"', body)
    rows = _excel_rows(base64.b64decode(match.group(1)))
    assert [r[0] for r in rows] == ["username", "ana", "beto"] and all(len(r) == 2 for r in rows)
