"""Save points: a copy of a guest's root disk the student can return to (labs.services.save_points).

Kept out of labs/models.py (which imports it at its end) so that file stays under the layout's size limit.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def default_max_save_points() -> int:
    return settings.XENPANEL_DEFAULT_MAX_SAVE_POINTS


class SavePoint(models.Model):
    """One save point of a guest's root volume: an LV of its own on the guest's host.

    A thin snapshot on a host whose guests' roots are thin (O(1), shares the
    root's blocks), else a full copy that takes its size from the volume group.
    It outlives a reset to the template; the guest's teardown removes it.
    """

    class Method(models.TextChoices):
        THIN = "thin", _("thin snapshot")
        COPY = "copy", _("full copy")

    class Status(models.TextChoices):
        TAKING = "taking", _("being taken")
        READY = "ready", _("ready")
        DELETING = "deleting", _("being deleted")

    guest = models.ForeignKey(
        "labs.Guest", on_delete=models.CASCADE, related_name="save_points", verbose_name=_("guest")
    )
    label = models.CharField(_("label"), max_length=64)
    volume = models.CharField(_("volume"), max_length=127)
    method = models.CharField(_("made as"), max_length=4, choices=Method.choices)
    size_mb = models.PositiveIntegerField(_("size (MiB)"))
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.TAKING)
    # Taken for the whole lab by an instructor: it does not count in the student's quota,
    # and only an instructor deletes it.
    lab_wide = models.BooleanField(_("taken for the whole lab"), default=False)
    taken_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("taken"), default=timezone.now)

    class Meta:
        ordering = ["guest", "created_at"]
        verbose_name = _("save point")
        verbose_name_plural = _("save points")
        constraints = [models.UniqueConstraint(fields=["guest", "volume"], name="save_point_volume_unique")]

    def __str__(self) -> str:
        return f"{self.guest_id}: {self.label} ({self.volume})"
