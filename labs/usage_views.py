"""Usage pages: a guest's and a host's charts (a fragment the page loads, and its JSON), the lab's sparklines
(JSON) and the lab's usage report (page and CSV).

Thin: labs.services.usage reads the rings; labs.access decides who sees
what, with the same rules as the pages the charts sit on (strangers 404).
The charts are drawn by static/js/usage.js from the JSON; every chart also
has a text summary and a table, rendered here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from labs.access import get_guest_for_user, get_host_for_user, get_lab_for_user, guests_for
from labs.services import usage, usage_report
from labs.spreadsheet import csv_download
from labs.views import GUESTS_PER_PAGE, live_login_required

# What one table row of a chart's data holds, per column of Series.columns.
TABLE_COLUMNS = ("cpu", "cpu_max", "mem_mb", "net_rx", "net_tx", "disk_read", "disk_write")
REPORT_CSV_HEADER = ("username", "full_name", "vms", "vm_hours", "cpu_hours", "peak_memory_mib", "console_hours")


def _tier(request: HttpRequest) -> usage.Tier:
    return usage.RANGES.get(request.GET.get("range", ""), usage.TIERS[0])


@dataclass(frozen=True)
class Figure:
    """One chart's text summary: what it averages and where it peaked."""

    average: float | None
    peak: float | None
    peak_at: Any
    second: float | None = None  # the other direction's average (sent, written)


def _figures(s: usage.Series) -> dict[str, Figure]:
    c, t = s.columns, s.times

    def pair(a: str, b: str) -> Figure:
        first, other = usage.summarize(c[a], c[a], t), usage.summarize(c[b], c[b], t)
        top = first if (first.peak or 0) >= (other.peak or 0) else other
        return Figure(first.average, top.peak, top.peak_at, other.average)

    cpu = usage.summarize(c["cpu"], c["cpu_max"], t)
    mem = usage.summarize(c["mem_mb"], c["mem_max_mb"], t)
    return {
        "cpu": Figure(cpu.average, cpu.peak, cpu.peak_at),
        "mem": Figure(mem.average, mem.peak, mem.peak_at),
        "net": pair("net_rx", "net_tx"),
        "disk": pair("disk_read", "disk_write"),
    }


def _table(s: usage.Series) -> list[dict[str, Any]]:
    """The points that exist, newest first, for the chart's table alternative."""
    rows = []
    for i in range(len(s.times) - 1, -1, -1):
        values = {k: s.columns[k][i] for k in TABLE_COLUMNS}
        if values["cpu"] is not None:
            rows.append({"at": datetime.fromtimestamp(s.times[i], tz=UTC), **values})
    return rows


def _charts(figures: dict[str, Figure], kinds: tuple[str, ...] = ("cpu", "mem", "net", "disk")) -> list[dict]:
    return [{"what": k, "f": figures[k]} for k in kinds]


def _when(tier: usage.Tier) -> str:
    """How the summaries and tables write a point's time: the hour for two hours, the day too beyond."""
    return "H:i" if tier.key == "2h" else "j M H:i"


def _range_links(url: str, tier: usage.Tier) -> list[dict[str, Any]]:
    return [{"key": t.key, "url": f"{url}?range={t.key}", "current": t == tier} for t in usage.TIERS]


@live_login_required
def guest_usage(request: HttpRequest, pk: int) -> HttpResponse:
    """The guest page's usage card (loaded by htmx): range switch, text summaries, chart slots, tables."""
    guest = get_guest_for_user(request, pk, related=("lab",))
    tier = _tier(request)
    s = usage.guest_series(guest, tier)
    ctx = {
        "guest": guest,
        "tier": tier,
        "ranges": _range_links(reverse("guest_usage", args=[guest.pk]), tier),
        "json_url": f"{reverse('guest_usage_json', args=[guest.pk])}?range={tier.key}",
        "charts": _charts(_figures(s)),
        "rows": _table(s),
        "when": _when(tier),
    }
    return render(request, "labs/_guest_usage.html", ctx)


@login_required
def guest_usage_json(request: HttpRequest, pk: int) -> JsonResponse:
    """The guest's points over one range, column by column, for uPlot (null where none)."""
    guest = get_guest_for_user(request, pk, related=("lab",))
    tier = _tier(request)
    s = usage.guest_series(guest, tier)
    return JsonResponse({"range": tier.key, "step": tier.step, "t": s.times, **s.columns})


@login_required
def lab_sparklines(request: HttpRequest, pk: int) -> JsonResponse:
    """Two hours of CPU and memory for the lab's guests named in `g` (the page's rows; at most a page's worth)."""
    lab = get_lab_for_user(request, pk)
    wanted = {int(x) for x in request.GET.get("g", "").split(",")[:GUESTS_PER_PAGE] if x.isdigit()}
    ids = list(lab.guests.filter(pk__in=wanted).values_list("pk", flat=True))
    return JsonResponse(usage.sparklines(ids))


@login_required
def lab_usage(request: HttpRequest, pk: int) -> HttpResponse:
    """The lab's usage report: per student, VM-hours, CPU-hours, peak memory, console-hours."""
    lab = get_lab_for_user(request, pk)
    rows = usage_report.lab_report(lab)
    totals = {
        "vm_hours": sum(r.vm_hours for r in rows),
        "cpu_hours": sum(r.cpu_hours for r in rows),
        "console_hours": sum(r.console_hours for r in rows),
    }
    return render(request, "labs/lab_usage.html", {"lab": lab, "rows": rows, "totals": totals})


@login_required
def lab_usage_csv(request: HttpRequest, pk: int) -> HttpResponse:
    lab = get_lab_for_user(request, pk)
    rows = (
        (
            r.username,
            r.full_name,
            r.vms,
            Decimal(f"{r.vm_hours:.2f}"),  # a Decimal: the "for Excel" form writes it with a decimal comma
            Decimal(f"{r.cpu_hours:.3f}"),
            r.peak_memory_mb,
            Decimal(f"{r.console_hours:.2f}"),
        )
        for r in usage_report.lab_report(lab)
    )
    return csv_download(request, f"{lab.slug}-usage", REPORT_CSV_HEADER, rows)


def _host_data(request: HttpRequest, pk: int) -> tuple[Any, usage.Tier, dict[str, Any]]:
    host = get_host_for_user(request, pk)
    tier = _tier(request)
    # Stacked by name only among the guests the user may see; the rest of the host is one "rest" band.
    return host, tier, usage.host_stack(host, tier, guests_for(request.user))


@live_login_required
def host_usage(request: HttpRequest, pk: int) -> HttpResponse:
    host, tier, data = _host_data(request, pk)
    s: usage.Series = data["series"]
    ctx = {
        "host": host,
        "tier": tier,
        "ranges": _range_links(reverse("host_usage", args=[host.pk]), tier),
        "json_url": f"{reverse('host_usage_json', args=[host.pk])}?range={tier.key}",
        "charts": _charts(_figures(s), ("cpu", "mem")),
        "figures": _figures(s),
        "rows": _table(s),
        "when": _when(tier),
        "stacked": [g["label"] for g in data["guests"]],
        "cpus": data["cpus"],
    }
    return render(request, "labs/_host_usage.html", ctx)


@login_required
def host_usage_json(request: HttpRequest, pk: int) -> JsonResponse:
    host, tier, data = _host_data(request, pk)
    s: usage.Series = data["series"]
    return JsonResponse(
        {
            "range": tier.key,
            "step": tier.step,
            "t": s.times,
            "cpu": s.columns["cpu"],
            "mem": s.columns["mem_mb"],
            "total_mem": host.total_memory_mb,
            "cpus": data["cpus"],
            "guests": data["guests"],
        }
    )
