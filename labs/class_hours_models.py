"""A lab's class hours: the weekly schedule its VMs follow (labs.services.class_hours applies it).

Kept out of labs/models.py so that file stays under the layout's size limit; labs.apps registers it.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


class ClassSchedule(models.Model):
    """Weekly class hours in the panel's time zone; outside them the lab's VMs sleep (saved or shut down)."""

    class Outside(models.TextChoices):
        SAVE = "save", _("saved (xl save: memory freed, programs resume where they were)")
        SHUTDOWN = "shutdown", _("shut down")

    lab = models.OneToOneField("labs.Lab", on_delete=models.CASCADE, related_name="class_hours", verbose_name=_("lab"))
    # Weekday numbers as Python counts them (Monday 0 ... Sunday 6), e.g. "13" for Tuesday and Thursday.
    days = models.CharField(_("days"), max_length=7)
    start = models.TimeField(_("class starts"))
    end = models.TimeField(_("class ends"))
    outside = models.CharField(
        _("outside class hours, VMs are"), max_length=8, choices=Outside.choices, default=Outside.SAVE
    )
    students_may_wake = models.BooleanField(_("students may wake their VM outside class hours"), default=False)
    # The last start-of-sleep or wake-up moment acted on: a panel that was down at a later one acts on it
    # when it comes back, and a VM a student woke is not put back to sleep before the next one.
    applied_at = models.DateTimeField(_("last applied"), null=True, blank=True)

    class Meta:
        verbose_name = _("class hours")
        verbose_name_plural = _("class hours")

    def __str__(self) -> str:
        return f"{self.lab}: {self.days} {self.start:%H:%M}-{self.end:%H:%M}"

    def clean(self) -> None:
        if not self.days or any(c not in "0123456" for c in self.days) or len(set(self.days)) != len(self.days):
            raise ValidationError({"days": _("Pick at least one day.")})
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValidationError({"end": _("Class must end after it starts, on the same day.")})
