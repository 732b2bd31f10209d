"""Account pages: one's own password, new accounts' first passwords, a student's password reset.

Changing one's password is Django's own view: it does the security-sensitive
work (old password check, the configured validators, keeping this session
valid and ending the others); the subclass only sends the user home with a
message, so no separate "done" page is needed. Passwords the panel makes are
shown once, from the session, on a page of their own.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.messages.views import SuccessMessageMixin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from labs import services
from labs.access import get_lab_for_user
from labs.forms import ConfirmForm
from labs.models import Guest, Lab
from labs.spreadsheet import csv_data_uri


class PasswordChangeView(SuccessMessageMixin, auth_views.PasswordChangeView):
    success_url = reverse_lazy("home")
    success_message = gettext_lazy("Your password was changed.")


# Session key for the new accounts' initial passwords, per lab; popped when shown.
NEW_ACCOUNTS_KEY = "xenpanel_new_accounts"
# Session key for a password an instructor just reset, until its one showing.
RESET_PASSWORD_KEY = "xenpanel_reset_password"


@never_cache
@login_required
def lab_accounts(request: HttpRequest, pk: int) -> HttpResponse:
    """New students' initial passwords: shown once, then gone from the session."""
    lab = get_lab_for_user(request, pk)
    stash = request.session.get(NEW_ACCOUNTS_KEY, {})
    accounts = stash.pop(str(lab.pk), None)
    if accounts is None:
        messages.info(request, _("There are no new passwords to show: they are shown only once."))
        return redirect("lab_detail", pk=lab.pk)
    request.session[NEW_ACCOUNTS_KEY] = stash
    header = ("username", "password")
    ctx = {
        "lab": lab,
        "accounts": accounts,
        "csv_uri": csv_data_uri(header, accounts),
        "excel_uri": csv_data_uri(header, accounts, excel=True),
    }
    return render(request, "labs/lab_accounts.html", ctx)


def _lab_student(lab: Lab, user_pk: int) -> Guest:
    """The student's guest in an authorized lab (with the student); 404 when they have none there."""
    guest = lab.guests.select_related("student").filter(student_id=user_pk).order_by("pk").first()
    if guest is None:
        raise Http404
    return guest


@login_required
def student_password_confirm(request: HttpRequest, pk: int, user_pk: int) -> HttpResponse:
    """Say what resetting a student's panel password does, then ask for a ticked box."""
    lab = get_lab_for_user(request, pk)
    guest = _lab_student(lab, user_pk)
    ctx = {
        "lab": lab,
        "guest": guest,
        "student": guest.student,
        "refusal": services.password_reset_refusal(request.user, guest.student),
        "form": ConfirmForm(label=_("I understand that the student's current password will stop working.")),
    }
    return render(request, "labs/student_password_confirm.html", ctx)


@never_cache
@require_POST
@login_required
def student_password_reset(request: HttpRequest, pk: int, user_pk: int) -> HttpResponse:
    """Reset the password, then show it once on a page of its own (never in a message or the URL).

    It waits in the session for that one showing, as new accounts' passwords
    do: shown in this POST's own response, a reload would reset it again and
    make the password just handed over useless.
    """
    lab = get_lab_for_user(request, pk)
    student = _lab_student(lab, user_pk).student
    if not ConfirmForm(request.POST).is_valid():
        messages.error(request, _("Nothing was done: tick the confirmation box first."))
        return redirect("student_password_confirm", pk=lab.pk, user_pk=student.pk)
    try:
        password = services.reset_student_password(request.user, lab, student)
    except services.ServiceError as e:
        messages.error(request, str(e.message))
        return redirect("lab_detail", pk=lab.pk)
    messages.success(request, _("The panel password of %(user)s was reset.") % {"user": student.username})
    request.session[RESET_PASSWORD_KEY] = {"lab": lab.pk, "user": student.pk, "password": password}
    return redirect("student_password_new", pk=lab.pk, user_pk=student.pk)


@never_cache
@login_required
def student_password_new(request: HttpRequest, pk: int, user_pk: int) -> HttpResponse:
    """The password just reset, once; then it is gone from the session."""
    lab = get_lab_for_user(request, pk)
    student = _lab_student(lab, user_pk).student
    stash = request.session.get(RESET_PASSWORD_KEY) or {}
    if (stash.get("lab"), stash.get("user")) != (lab.pk, student.pk):
        messages.info(request, _("There is no new password to show: it is shown only once."))
        return redirect("lab_detail", pk=lab.pk)
    del request.session[RESET_PASSWORD_KEY]
    ctx = {"lab": lab, "student": student, "password": stash["password"]}
    return render(request, "labs/student_password.html", ctx)
