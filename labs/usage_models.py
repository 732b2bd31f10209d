"""The usage rings and totals: what each host's sync writes for the charts and the usage report
(labs.services.usage). Kept out of labs/models.py for the layout's size limit; labs.models re-exports them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class UsageRing(models.Model):
    """One point of a usage ring: a fixed number of rows per owner, like an RRD (labs.services.usage).

    `tier` picks the step (0: 1 minute, 1: 10 minutes, 2: 1 hour) and `slot`
    is the point's place in that tier's ring (bucket modulo the ring's size),
    so a new point overwrites the one a ring-length older: an owner never has
    more rows than the rings have slots. `bucket` (start of the step, in
    seconds since the epoch divided by the step) tells a current point from a
    stale one. Points of a coarser tier merge `n` minute points.
    """

    tier = models.PositiveSmallIntegerField()
    slot = models.PositiveIntegerField()
    bucket = models.BigIntegerField()
    n = models.PositiveIntegerField(default=1)
    # CPU: average and highest busy share over the step, in % (of a guest's vCPUs, or of a host's CPUs).
    cpu = models.FloatField()
    cpu_max = models.FloatField()
    # Memory Xen gives the domain(s) (xl list's Mem), MiB: average and highest.
    mem_mb = models.FloatField()
    mem_max_mb = models.PositiveIntegerField()
    # Bytes over the step (xentop's totals, differenced); null where no reading covered it.
    net_rx = models.BigIntegerField(null=True)
    net_tx = models.BigIntegerField(null=True)
    disk_read = models.BigIntegerField(null=True)
    disk_write = models.BigIntegerField(null=True)

    class Meta:
        abstract = True


class UsageSample(UsageRing):
    guest = models.ForeignKey("labs.Guest", on_delete=models.CASCADE, related_name="usage_samples")

    class Meta:
        verbose_name = _("guest usage sample")
        verbose_name_plural = _("guest usage samples")
        constraints = [models.UniqueConstraint(fields=["guest", "tier", "slot"], name="usage_sample_ring_slot")]

    def __str__(self) -> str:
        return f"guest {self.guest_id} tier {self.tier} bucket {self.bucket}: {self.cpu:.1f} %"


class HostUsageSample(UsageRing):
    """The whole host: every domain, dom0 included; CPU in % of the host's CPUs."""

    host = models.ForeignKey("labs.Host", on_delete=models.CASCADE, related_name="usage_samples")

    class Meta:
        verbose_name = _("host usage sample")
        verbose_name_plural = _("host usage samples")
        constraints = [models.UniqueConstraint(fields=["host", "tier", "slot"], name="host_usage_sample_ring_slot")]

    def __str__(self) -> str:
        return f"host {self.host_id} tier {self.tier} bucket {self.bucket}: {self.cpu:.1f} %"


class UsageTotal(models.Model):
    """A guest's running totals for the lab's usage report; kept when the guest is deleted (end of term)."""

    guest = models.ForeignKey("labs.Guest", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lab = models.ForeignKey("labs.Lab", on_delete=models.CASCADE, related_name="usage_totals")
    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Its dom0 reads and writes it (row-level security follows the host, not the guest, which goes).
    host = models.ForeignKey("labs.Host", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    domain_name = models.CharField(max_length=48)
    run_seconds = models.FloatField(default=0)  # seen running or paused
    cpu_seconds = models.FloatField(default=0)
    peak_memory_mb = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        verbose_name = _("usage total")
        verbose_name_plural = _("usage totals")
        constraints = [models.UniqueConstraint(fields=["guest"], name="usage_total_one_per_guest")]

    def __str__(self) -> str:
        return f"{self.domain_name}: {self.run_seconds / 3600:.1f} h, {self.cpu_seconds / 3600:.2f} CPU-h"


class UsageCursor(models.Model):
    """The sync's memory between ticks for one host: the last counters and the minute being summed (JSON)."""

    host = models.OneToOneField("labs.Host", on_delete=models.CASCADE, primary_key=True, related_name="+")
    state = models.JSONField(default=dict)

    class Meta:
        verbose_name = _("usage cursor")
        verbose_name_plural = _("usage cursors")

    def __str__(self) -> str:
        return f"usage cursor of host {self.host_id}"
