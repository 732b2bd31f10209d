"""Forms for the panel. They validate input; the service layer decides and acts.

Each form only checks what the user typed (types, bounds, the roster's
lines). Rules that need the database or the queue (quotas, free IPs, the
host's memory) are the service layer's, whose ServiceError the views put
back on the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Div, Field, Fieldset, Layout
from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core import validators
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from labs import services
from labs.campus import directory_was_down
from labs.dom0 import names
from labs.dom0.errors import InvalidName
from labs.models import Host, IpPool, LabTemplate
from labs.roster import RosterEntry, RosterError, RosterFileError, decode_roster, parse_roster
from labs.services.errors import QuotaExceeded
from labs.services.limits import MIN_GUEST_MEMORY_MB, MemoryLimit

# A roster for one lab; anything bigger is a mistake, not a class.
MAX_ROSTER_BYTES = 512 * 1024

ROSTER_FIELDS = {
    "username": _("username"),
    "full_name": _("full name"),
    "email": _("e-mail"),
    "line": _("line"),
    "roster": _("roster"),
}


def data_with(data: Mapping[str, Any], **values: str) -> QueryDict:
    """A copy of a bound form's data with some values replaced, for showing the form again."""
    copy = QueryDict(mutable=True)
    copy.update(data)
    for name, value in values.items():
        copy[name] = value
    return copy


def batch_memory_bounds(template: LabTemplate | None) -> tuple[int, int]:
    """(min, max) MiB per guest for a new batch; before a template is chosen, the site's limit."""
    if template is not None:
        return services.memory_limits(template)
    return MIN_GUEST_MEMORY_MB, settings.XENPANEL_DEFAULT_LAB_MAX_GUEST_MEMORY_MB


class LabBatchForm(forms.Form):
    name = forms.CharField(label=_("Lab name"), max_length=100)
    slug = forms.CharField(
        label=_("Short name"),
        max_length=20,
        required=False,
        help_text=_("Used in VM names (letters, digits and '-'). Leave empty to derive it from the lab name."),
    )
    template = forms.ModelChoiceField(label=_("Template"), queryset=LabTemplate.objects.all())
    pool = forms.ModelChoiceField(label=_("IP pool"), queryset=IpPool.objects.all())
    memory_mb = forms.IntegerField(label=_("Memory per guest (MiB)"), min_value=1)
    host = forms.ModelChoiceField(
        label=_("Host"),
        queryset=Host.objects.filter(enabled=True),
        required=False,
        empty_label=_("Automatic (spread over the hosts with free memory)"),
    )
    expires_at = forms.DateTimeField(
        label=_("Expires"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=_("Optional. At this time the panel destroys the lab's VMs and deletes their disks."),
    )
    roster_file = forms.FileField(
        label=_("Roster file (CSV)"),
        required=False,
        help_text=_("One student per line: username, full name, e-mail."),
    )
    roster_text = forms.CharField(
        label=_("Or paste the roster"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "font-monospace"}),
        help_text=_("username,full name,e-mail — one student per line."),
    )
    # The token of the preview the instructor saw (labs.services.batch.preview_lab_batch): filled in by
    # the view when it shows one, sent back with "Create"; signed, compressed, some 30 bytes a student.
    preview_token = forms.CharField(required=False, widget=forms.HiddenInput, max_length=MAX_ROSTER_BYTES)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.roster: list[RosterEntry] = []
        self.roster_errors: list[RosterError] = []
        self.roster_source = ""  # the roster's text, pasted or from the file
        self.preview = None  # the batch's preview (labs.services.BatchPreview), set by the view
        self.preview_changes: list[str] = []  # what changed since the preview the instructor saw
        self._default_memory()
        low, high = batch_memory_bounds(None)
        self.fields["memory_mb"].widget.attrs.update({"min": low, "max": high, "step": 8})
        self.fields["memory_mb"].help_text = _(
            "Between %(low)s and %(high)s MiB, and at most the template's maximum."
        ) % {
            "low": low,
            "high": high,
        }
        self.helper = FormHelper()
        self.helper.form_id = "lab-batch-form"
        self.helper.attrs = {"novalidate": ""}
        self.helper.layout = Layout(
            Fieldset(
                _("Lab"),
                Div(Div("name", css_class="col-md-8"), Div("slug", css_class="col-md-4"), css_class="row"),
                Div(Div("template", css_class="col-md-6"), Div("pool", css_class="col-md-6"), css_class="row"),
                Div(
                    Div("memory_mb", css_class="col-md-4"),
                    Div("host", css_class="col-md-4"),
                    Div("expires_at", css_class="col-md-4"),
                    css_class="row",
                ),
            ),
            Fieldset(_("Students"), "roster_file", Field("roster_text")),
            HTML('{% include "labs/_roster_errors.html" %}'),
            "preview_token",
            HTML('{% include "labs/_batch_preview.html" %}'),
        )

    def _default_memory(self) -> None:
        """Memory starts at the template's own (batch.js follows the template picked); the first one's at first."""
        defaults = {str(t.pk): t.default_memory_mb for t in LabTemplate.objects.order_by("name")}
        self.template_memory = defaults
        chosen = self.initial.get("template")
        first = defaults.get(str(getattr(chosen, "pk", chosen))) if chosen else next(iter(defaults.values()), None)
        if first is not None:
            self.fields["memory_mb"].initial = first

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].strip().lower()
        if slug:
            try:
                names.domain_name(slug)
            except InvalidName as e:
                raise forms.ValidationError(str(e)) from None
        return slug

    def clean_expires_at(self):
        value = self.cleaned_data["expires_at"]
        if value is not None and value <= timezone.now():
            raise forms.ValidationError(_("The expiry date must be in the future."))
        return value

    def _roster_text(self) -> str:
        upload = self.cleaned_data.get("roster_file")
        if upload:
            if upload.size > MAX_ROSTER_BYTES:
                raise forms.ValidationError(
                    {
                        "roster_file": _("The roster file is too large (at most %(kb)s KiB).")
                        % {"kb": MAX_ROSTER_BYTES // 1024}
                    }
                )
            try:
                return decode_roster(upload.read())
            except RosterFileError as e:
                raise forms.ValidationError({"roster_file": str(e)}) from None
        text = self.cleaned_data.get("roster_text") or ""
        if len(text.encode()) > MAX_ROSTER_BYTES:
            raise forms.ValidationError(
                {"roster_text": _("The roster is too large (at most %(kb)s KiB).") % {"kb": MAX_ROSTER_BYTES // 1024}}
            )
        return text

    def clean(self) -> dict:
        data = super().clean() or {}
        template = data.get("template")
        memory = data.get("memory_mb")
        if template is not None and memory is not None:
            low, high = batch_memory_bounds(template)
            if not low <= memory <= high:
                self.add_error(
                    "memory_mb",
                    _("Memory per guest must be between %(low)s and %(high)s MiB for template %(template)s.")
                    % {"low": low, "high": high, "template": template},
                )
        if data.get("roster_file") and data.get("roster_text", "").strip():
            raise forms.ValidationError(_("Upload a roster file or paste the roster, not both."))
        text = self.roster_source = self._roster_text()
        if not text.strip():
            self.add_error("roster_text", _("The roster is empty: add at least one student."))
            return data
        self.roster, self.roster_errors = parse_roster(text)
        if self.roster_errors:
            # One message on the field; the line-by-line table follows it.
            self.add_error(
                "roster_text",
                ngettext(
                    "%(n)d line of the roster has a problem (see the list below).",
                    "%(n)d lines of the roster have problems (see the list below).",
                    len({e.line for e in self.roster_errors}),
                )
                % {"n": len({e.line for e in self.roster_errors})},
            )
        if not self.roster and not self.roster_errors:
            self.add_error("roster_text", _("The roster is empty: add at least one student."))
        return data

    def batch_arguments(self) -> dict:
        """The arguments of services.preview_lab_batch and create_lab_batch, from the cleaned form."""
        data = self.cleaned_data
        return {
            "template": data["template"],
            "pool": data["pool"],
            "roster": self.roster,
            "memory_mb": data["memory_mb"],
            "hosts": [data["host"]] if data["host"] else None,
            "expires_at": data["expires_at"],
            "name": data["name"],
            "slug": data["slug"] or None,
        }

    def show_preview(self, preview, changes: list[str] | None = None) -> None:
        """Show the form again with the batch's preview and its token, for "Create".

        The short name comes back as the preview made it (the instructor may
        edit it and preview again); the roster comes back as text, as a
        browser does not send a file again.
        """
        self.preview, self.preview_changes = preview, changes or []
        self.data = data_with(
            self.data, preview_token=preview.token, slug=preview.slug, roster_text=self.roster_source
        )

    @property
    def roster_error_rows(self) -> list[dict]:
        """The roster's problems for the template, with the field named in the user's language."""
        return [
            {"line": e.line, "field": e.field, "label": ROSTER_FIELDS.get(e.field, e.field), "message": e.message}
            for e in self.roster_errors
        ]


class MemoryForm(forms.Form):
    """The new memory size for one guest, within the service layer's limit; a refusal names the limit."""

    memory_mb = forms.IntegerField(label=_("Memory (MiB)"))

    def __init__(self, *args, limit: MemoryLimit, viewer_is_student: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limit, self.viewer_is_student = limit, viewer_is_student
        low, high = limit.bounds()
        field = self.fields["memory_mb"]
        assert isinstance(field, forms.IntegerField)
        field.widget.attrs.update({"min": low, "max": high, "step": 8})
        field.help_text = _("Between %(low)s and %(high)s MiB.") % {"low": low, "high": high}

    def clean_memory_mb(self) -> int:
        value = self.cleaned_data["memory_mb"]
        try:
            self.limit.refuse(value)
        except QuotaExceeded as e:
            # Django's own "less than or equal to 300" says nothing of which limit that is.
            raise forms.ValidationError(f"{e.message} {self.limit.explain(self.viewer_is_student)}") from None
        return value


class ExpiryForm(forms.Form):
    """A lab's new expiry, from its page: a date, a number of days later, or none at all."""

    expires_at = forms.DateTimeField(
        label=_("Destroy the lab's VMs at"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    extend_days = forms.IntegerField(required=False, min_value=1, max_value=365)
    clear = forms.BooleanField(required=False)

    def clean(self) -> dict:
        data = super().clean() or {}
        # The date field is sent with every button: a button's own value comes first (see the view).
        if not any(data.get(name) for name in ("expires_at", "extend_days", "clear")):
            raise forms.ValidationError(_("Give the new expiry date, or extend it, or remove it."))
        return data


class ConfirmForm(forms.Form):
    """A destructive action goes ahead only with this box ticked, checked on the server."""

    confirm = forms.BooleanField(label=_("I understand, go ahead."), required=True)

    def __init__(self, *args, label: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if label:
            self.fields["confirm"].label = label


class LoginForm(AuthenticationForm):
    """The panel's login form: Django's, with the username's length checked; a longer one is refused, not sent back.

    Django sets the field's max_length (150, the User model's) for the
    browser only; a bigger POST (a megabyte) went through, got the usual
    "correct username and password" error and came back whole in the page.
    """

    def __init__(self, request=None, *args, **kwargs) -> None:
        super().__init__(request, *args, **kwargs)
        field = self.fields["username"]
        assert isinstance(field, forms.CharField) and field.max_length is not None
        self.username_max_length = field.max_length
        field.validators.append(
            validators.MaxLengthValidator(
                field.max_length, message=_("A username has at most %(limit_value)d characters.")
            )
        )

    def get_invalid_login_error(self) -> forms.ValidationError:
        # No account matched; if the campus directory did not answer, that is why for a campus account.
        if directory_was_down(self.request):
            return forms.ValidationError(
                _(
                    "The campus directory is not answering, so campus accounts cannot sign in right now; try again"
                    " in a few minutes. Local panel accounts still sign in."
                ),
                code="directory_down",
            )
        return super().get_invalid_login_error()

    def full_clean(self) -> None:
        super().full_clean()
        if "username" in self.errors and len(self.data.get("username", "")) > self.username_max_length:
            # Shown again empty: the page does not repeat what was sent.
            self.data = data_with(self.data, username="")


class AdminLoginForm(LoginForm, AdminAuthenticationForm):
    """The admin's login form (staff only), with the same check."""
