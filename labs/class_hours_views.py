"""A lab's class hours (its instructors set them) and "start the lab's stopped VMs"."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from labs import services
from labs.access import get_lab_for_user, may_edit_class_hours
from labs.class_hours_models import ClassSchedule
from labs.forms import ConfirmForm
from labs.models import Lab
from labs.services import class_hours
from labs.services.actions import stopped_guests
from labs.services.registry import LAB_ACTIONS

WEEKDAYS = [
    ("0", gettext_lazy("Monday")),
    ("1", gettext_lazy("Tuesday")),
    ("2", gettext_lazy("Wednesday")),
    ("3", gettext_lazy("Thursday")),
    ("4", gettext_lazy("Friday")),
    ("5", gettext_lazy("Saturday")),
    ("6", gettext_lazy("Sunday")),
]


class ClassHoursForm(forms.ModelForm):
    days = forms.MultipleChoiceField(
        label=gettext_lazy("Class days"), choices=WEEKDAYS, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ClassSchedule
        fields = ["days", "start", "end", "outside", "students_may_wake"]
        widgets = {
            "start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "outside": forms.RadioSelect,
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["days"] = list(self.instance.days)

    def clean_days(self) -> str:
        return "".join(sorted(set(self.cleaned_data["days"])))


def _get_lab_for_editor(request: HttpRequest, pk: int) -> Lab:
    lab = get_lab_for_user(request, pk)
    if not may_edit_class_hours(request.user, lab) or lab.status != Lab.Status.ACTIVE:
        raise Http404
    return lab


@login_required
def lab_class_hours(request: HttpRequest, pk: int) -> HttpResponse:
    """Set, change or remove the lab's weekly class hours."""
    lab = _get_lab_for_editor(request, pk)
    schedule = class_hours.schedule_of(lab) or ClassSchedule(lab=lab)
    if request.method == "POST" and "remove" in request.POST:
        if schedule.pk:
            schedule.delete()
        messages.success(request, _("Class hours removed: the lab's VMs no longer sleep outside them."))
        return redirect("lab_detail", pk=lab.pk)
    form = ClassHoursForm(request.POST or None, instance=schedule)
    if request.method == "POST" and form.is_valid():
        changed = form.save(commit=False)
        # A new or changed schedule acts on its latest moment at the next tick (the VMs follow it now).
        changed.applied_at = None
        changed.save()
        messages.success(request, _("Class hours saved."))
        return redirect("lab_detail", pk=lab.pk)
    now = class_hours.phase(schedule, timezone.now()) if schedule.pk else None
    ctx = {
        "lab": lab,
        "form": form,
        "schedule": schedule if schedule.pk else None,
        "next": class_hours.wake_time(now.until) if now and now.until else "",
        "awake": bool(now and now.awake),
        "time_zone": timezone.get_current_timezone_name(),
    }
    return render(request, "labs/lab_class_hours.html", ctx)


@login_required
def lab_start_stopped(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm, then start every stopped VM of the lab (after a dom0 came back without its guests)."""
    lab = _get_lab_for_editor(request, pk)
    guests = stopped_guests(lab)
    label = str(LAB_ACTIONS["start_stopped"].confirm) % {"n": len(guests)}
    form = ConfirmForm(request.POST or None, label=label)
    if request.method == "POST":
        if not form.is_valid():
            messages.error(request, _("Nothing was done: tick the confirmation box first."))
            return redirect("lab_start_stopped", pk=lab.pk)
        try:
            tasks = services.lab_action(request.user, lab, "start_stopped")
        except services.ServiceError as e:
            messages.error(request, str(e.message))
        else:
            messages.success(request, _("%(count)s VMs are being started.") % {"count": len(tasks)})
        return redirect("lab_detail", pk=lab.pk)
    return render(request, "labs/lab_start_stopped.html", {"lab": lab, "guests": guests, "form": form})
