"""The usage pages: a guest's charts (fragment, JSON), the lab page's runaway flag, sort and sparklines, the host's
stacked charts, and the lab's usage report (page, CSV).

Samples are made as the sync makes them: labs.services.usage.record() fed
`xl list` rows, tick by tick, up to now.
"""

from __future__ import annotations

import csv
import io
import time

import pytest
from django.urls import reverse

from labs.dom0.base import Domain
from labs.models import Guest, UsageSample, UsageTotal
from labs.services import usage
from labs.services.console import ConsoleTarget, record_close

from .conftest import set_state

TICK = 15


def feed(host, rates: dict[Guest, float], minutes: int = 12, end: float | None = None) -> None:
    """`minutes` of sync ticks ending now, each guest using `rates[guest]` of its one vCPU."""
    hm = usage.load_meter(host)
    guests = {g.domain_name: g for g in rates}
    end = time.time() if end is None else end
    cpu = dict.fromkeys(rates, 0.0)
    ts = end - minutes * 60
    while ts <= end:
        domains = [Domain("Domain-0", 0, 1024, 2, "r-----", cpu_seconds=ts * 0.01)]
        domains += [
            Domain(g.domain_name, 3 + i, g.memory_mb, 1, "-b----", cpu_seconds=cpu[g]) for i, g in enumerate(rates)
        ]
        usage.record(hm, ts, domains, 2, guests)
        for g, rate in rates.items():
            cpu[g] += TICK * rate
        ts += TICK


@pytest.fixture
def busy_lab(alice_guest, bob_guest, host):
    """alice's VM spins at 97 %, bob's idles at 1 %, for the last 12 minutes."""
    set_state(alice_guest, "r")
    set_state(bob_guest, "b")
    feed(host, {alice_guest: 0.97, bob_guest: 0.01})
    return alice_guest, bob_guest


# ---------------------------------------------------------------- a guest's charts


def test_the_guest_page_loads_its_usage_card(client, alice, busy_lab):
    alice_guest, _ = busy_lab
    client.force_login(alice)
    page = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert f'hx-get="{reverse("guest_usage", args=[alice_guest.pk])}"' in page
    assert "vendor/uplot/uPlot.iife.min.js" in page and "js/usage.js" in page


def test_the_usage_fragment_says_in_words_what_the_charts_draw(client, alice, busy_lab):
    alice_guest, _ = busy_lab
    client.force_login(alice)
    body = client.get(reverse("guest_usage", args=[alice_guest.pk])).content.decode()
    assert "CPU: average 97 %, peak 97 % at " in body, body
    assert "Memory: average 256 MiB, highest 256 MiB at " in body
    assert "Network: no readings in this range yet." in body  # no xentop in this feed
    assert f'data-usage-url="{reverse("guest_usage_json", args=[alice_guest.pk])}?range=2h"' in body
    # The table alternative: one row per minute point, newest first.
    assert body.count('<th scope="row" class="fw-normal">') >= 10
    assert 'aria-pressed="true">2 hours<' in body
    assert "30 days" in client.get(reverse("guest_usage", args=[alice_guest.pk]), {"range": "30d"}).content.decode()


def test_the_chart_json_has_one_point_per_bucket_of_the_range(client, alice, busy_lab):
    alice_guest, _ = busy_lab
    client.force_login(alice)
    url = reverse("guest_usage_json", args=[alice_guest.pk])
    d = client.get(url).json()
    assert d["range"] == "2h" and d["step"] == 60 and len(d["t"]) == len(d["cpu"]) == 120
    points = [v for v in d["cpu"] if v is not None]
    assert len(points) >= 10 and all(96 <= v <= 98 for v in points)
    assert d["t"] == sorted(d["t"]) and d["t"][1] - d["t"][0] == 60
    assert {"cpu_max", "mem_mb", "mem_max_mb", "net_rx", "net_tx", "disk_read", "disk_write"} <= set(d)
    assert len(client.get(url, {"range": "2d"}).json()["t"]) == 288
    assert len(client.get(url, {"range": "30d"}).json()["t"]) == 720
    assert client.get(url, {"range": "forever"}).json()["range"] == "2h"


def test_another_student_gets_404_for_the_json(client, bob, busy_lab):
    alice_guest, _ = busy_lab
    client.force_login(bob)
    assert client.get(reverse("guest_usage_json", args=[alice_guest.pk])).status_code == 404
    assert client.get(reverse("guest_usage", args=[alice_guest.pk])).status_code == 404


def test_the_usage_fragment_in_portuguese(client, alice, busy_lab):
    alice_guest, _ = busy_lab
    client.force_login(alice)
    body = client.get(reverse("guest_usage", args=[alice_guest.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    assert "CPU: média de 97 %, pico de 97 % às " in body, body
    assert "2 horas" in body and "A tabela com os números" in body


# ---------------------------------------------------------------- the lab page


def test_the_lab_page_flags_the_vm_spinning_for_ten_minutes(client, ivy, busy_lab, lab):
    alice_guest, bob_guest = busy_lab
    client.force_login(ivy)
    body = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    assert "1 VM has used more than 90 % CPU for 10 minutes:" in body
    assert f'<a href="{reverse("guest_detail", args=[alice_guest.pk])}">{alice_guest.domain_name}</a>' in body
    alice_row = body.split(f'data-guest="{alice_guest.domain_name}"')[1].split("</tr>")[0]
    bob_row = body.split(f'data-guest="{bob_guest.domain_name}"')[1].split("</tr>")[0]
    assert "over 90 % for 10 min" in alice_row and "97 %" in alice_row
    assert "over 90 %" not in bob_row and "1 %" in bob_row
    assert f'data-sparklines-url="{reverse("lab_sparklines", args=[lab.pk])}"' in body
    # The live fragment, polled every few seconds, carries the same.
    live = client.get(reverse("lab_live", args=[lab.pk])).content.decode()
    assert "over 90 % for 10 min" in live and 'id="runaways"' in live


def test_nine_minutes_is_not_yet_a_runaway(client, ivy, alice_guest, host, lab):
    set_state(alice_guest, "r")
    feed(host, {alice_guest: 0.97}, minutes=8)
    client.force_login(ivy)
    body = client.get(reverse("lab_detail", args=[lab.pk])).content.decode()
    assert 'id="runaways"' not in body and "over 90 %" not in body
    assert usage.runaways(lab) == []


def test_a_vm_that_spun_an_hour_ago_is_not_flagged_now(client, ivy, alice_guest, host, lab):
    set_state(alice_guest, "r")
    feed(host, {alice_guest: 0.97}, minutes=30, end=time.time() - 3600)
    assert UsageSample.objects.filter(guest=alice_guest, tier=0, cpu__gte=90).count() >= 25
    assert usage.runaways(lab) == [] and usage.recent_cpu([alice_guest.pk]) == {}


def test_the_lab_table_sorts_by_cpu_and_by_memory(client, ivy, lab, alice_guest, bob_guest, host):
    Guest.objects.filter(pk=alice_guest.pk).update(memory_mb=512)
    alice_guest.refresh_from_db()
    feed(host, {alice_guest: 0.05, bob_guest: 0.6})
    client.force_login(ivy)

    def order(**params) -> list[str]:
        body = client.get(reverse("lab_detail", args=[lab.pk]), params).content.decode()
        names = (alice_guest.domain_name, bob_guest.domain_name)
        return sorted(names, key=lambda n: body.index(f'data-guest="{n}"'))

    assert order() == [alice_guest.domain_name, bob_guest.domain_name]  # by student
    assert order(sort="cpu") == [bob_guest.domain_name, alice_guest.domain_name]
    assert order(sort="mem") == [alice_guest.domain_name, bob_guest.domain_name]
    body = client.get(reverse("lab_detail", args=[lab.pk]), {"sort": "cpu"}).content.decode()
    assert 'aria-sort="descending"' in body and "busiest CPU first" in body


def test_sparklines_answer_for_the_labs_own_guests_only(client, ivy, busy_lab, lab, charlie, template, pool, host):
    from labs.models import Lab
    from tests.conftest import make_guest

    alice_guest, bob_guest = busy_lab
    other = Lab.objects.create(name="Other", slug="other", template=template, pool=pool, memory_mb=256)
    other.instructors.add(charlie)
    stranger = make_guest(other, charlie, host, 9)
    client.force_login(ivy)
    ids = f"{alice_guest.pk},{bob_guest.pk},{stranger.pk},x"
    d = client.get(reverse("lab_sparklines", args=[lab.pk]), {"g": ids}).json()
    assert set(d["guests"]) == {str(alice_guest.pk), str(bob_guest.pk)} and len(d["t"]) == 120
    assert max(v for v in d["guests"][str(alice_guest.pk)]["cpu"] if v is not None) > 90


# ---------------------------------------------------------------- the host page


def test_the_host_card_stacks_only_the_guests_the_user_may_see(client, ivy, charlie, busy_lab, host):
    alice_guest, bob_guest = busy_lab
    url = reverse("host_usage_json", args=[host.pk])
    client.force_login(ivy)
    d = client.get(url).json()
    assert [g["label"] for g in d["guests"]] == [alice_guest.domain_name, bob_guest.domain_name]
    assert d["cpus"] == 2 and len(d["t"]) == len(d["cpu"]) == 120
    host_points = [v for v in d["cpu"] if v is not None]
    alice_share = [v for v in d["guests"][0]["cpu"] if v is not None]
    assert host_points and alice_share and 45 <= alice_share[-1] <= 50  # 97 % of one of two CPUs
    body = client.get(reverse("host_usage", args=[host.pk])).content.decode()
    assert "Host CPU: average" in body and alice_guest.domain_name in body
    # Another instructor sees the host's totals, but no one else's VM by name.
    client.force_login(charlie)
    d = client.get(url).json()
    assert d["guests"] == [] and [v for v in d["cpu"] if v is not None]
    assert alice_guest.domain_name not in client.get(reverse("host_usage", args=[host.pk])).content.decode()


def test_the_host_page_loads_its_usage_card(client, ivy, host):
    client.force_login(ivy)
    page = client.get(reverse("host_detail", args=[host.pk])).content.decode()
    assert f'hx-get="{reverse("host_usage", args=[host.pk])}"' in page


# ---------------------------------------------------------------- the usage report


@pytest.fixture
def reported(busy_lab, lab, ivy, alice, bob):
    alice_guest, bob_guest = busy_lab
    # Console sessions, as the console service audits them: alice's own, and ivy watching alice's.
    target = ConsoleTarget(
        guest_id=alice_guest.pk,
        lab_id=lab.pk,
        domain=alice_guest.domain_name,
        queue=alice_guest.host.queue_name,
        writable=True,
        can_take_over=False,
        username="alice",
    )
    record_close(target, alice.pk, 5400, took_over=False)
    record_close(target, ivy.pk, 1800, took_over=False)
    return alice_guest, bob_guest


def test_the_usage_report_per_student(client, ivy, reported, lab):
    alice_guest, _ = reported
    client.force_login(ivy)
    body = client.get(reverse("lab_usage", args=[lab.pk])).content.decode()
    rows = {r.username: r for r in usage_report_rows(lab)}
    alice, bob = rows["alice"], rows["bob"]
    assert alice.vms == 1 and 0.15 <= alice.vm_hours <= 0.21 and 0.15 <= alice.cpu_hours <= 0.2
    assert alice.console_hours == pytest.approx(1.5)  # ivy's half hour on alice's console is not alice's
    assert bob.cpu_hours < 0.01 and bob.console_hours == 0
    assert alice.peak_memory_mb == 256
    assert "VM-hours" in body and "Console-hours" in body and "1.5" in body
    assert reverse("lab_usage_csv", args=[lab.pk]) in body


def test_the_usage_report_keeps_a_deleted_vm(client, ivy, reported, lab):
    alice_guest, _ = reported
    alice_guest.delete()
    assert UsageTotal.objects.get(lab=lab, domain_name=alice_guest.domain_name).guest_id is None
    row = {r.username: r for r in usage_report_rows(lab)}["alice"]
    assert row.vms == 1 and row.cpu_hours > 0.1 and row.console_hours == pytest.approx(1.5)


def test_the_usage_report_as_csv(client, ivy, reported, lab):
    client.force_login(ivy)
    r = client.get(reverse("lab_usage_csv", args=[lab.pk]))
    assert r["Content-Type"].startswith("text/csv") and f'filename="{lab.slug}-usage.csv"' in r["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["username", "full_name", "vms", "vm_hours", "cpu_hours", "peak_memory_mib", "console_hours"]
    by_user = {row[0]: row for row in rows[1:]}
    assert by_user["alice"][6] == "1.50" and float(by_user["alice"][4]) > 0.1 and by_user["alice"][5] == "256"


def test_the_lab_page_links_the_usage_report(client, ivy, lab):
    client.force_login(ivy)
    assert reverse("lab_usage", args=[lab.pk]) in client.get(reverse("lab_detail", args=[lab.pk])).content.decode()


def usage_report_rows(lab):
    from labs.services.usage_report import lab_report

    return lab_report(lab)
