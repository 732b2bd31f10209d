"""The new-batch form: a preview of what the batch creates, then the batch (labs.services.batch)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from labs import services
from labs.access import require_instructor
from labs.auth_views import NEW_ACCOUNTS_KEY
from labs.forms import LabBatchForm

# The service layer names its arguments; the form names its fields.
SERVICE_FIELDS = {"hosts": "host", "roster": "roster_text"}


@login_required
def lab_create(request: HttpRequest) -> HttpResponse:
    """The batch form: "Preview" shows what would be created (nothing is); "Create" creates exactly that."""
    require_instructor(request)
    form = LabBatchForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["preview_token"]
        try:
            if "create" in request.POST and token:
                result = services.create_lab_batch(request.user, **form.batch_arguments(), confirm_preview=token)
                return _lab_created(request, result)
            form.show_preview(services.preview_lab_batch(request.user, **form.batch_arguments()))
        except services.PreviewChanged as e:
            form.show_preview(e.preview, e.changes)
            form.add_error(None, e.message)
        except services.ServiceError as e:
            field = SERVICE_FIELDS.get(e.field or "", e.field)
            form.add_error(field if field in form.fields else None, str(e.message))
    return render(request, "labs/lab_create.html", {"form": form})


def _lab_created(request: HttpRequest, result: services.BatchResult) -> HttpResponse:
    """After a batch: say so, then the new passwords (shown once) or the lab's page."""
    lab = result.lab
    messages.success(
        request,
        _("Lab %(lab)s created: %(count)s VMs are being provisioned.")
        % {"lab": lab.name, "count": len(result.guests)},
    )
    if result.campus_accounts:
        messages.info(
            request,
            ngettext(
                "%(n)d new account is a campus account: its student signs in with the campus password.",
                "%(n)d new accounts are campus accounts: their students sign in with the campus password.",
                len(result.campus_accounts),
            )
            % {"n": len(result.campus_accounts)},
        )
    if result.new_accounts:
        stash = request.session.get(NEW_ACCOUNTS_KEY, {})
        stash[str(lab.pk)] = [list(pair) for pair in result.new_accounts]
        request.session[NEW_ACCOUNTS_KEY] = stash
        return redirect("lab_accounts", pk=lab.pk)
    return redirect("lab_detail", pk=lab.pk)
