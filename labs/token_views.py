"""My API tokens: every signed-in user makes, lists and revokes their own tokens for the JSON API.

A new token is shown once, on the page the creating POST redirects to (it
waits in the session until then, never in a message or the URL); the list
shows its first characters, expiry and last use. Another user's token is a
404, for admins too.
"""

from __future__ import annotations

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Div, Layout, Submit
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from labs.access import get_api_token_for_user
from labs.models import ApiToken
from labs.services import api_tokens
from labs.services.errors import ServiceError
from labs.views import AuthenticatedHttpRequest

# Session key for a token just made, until its one showing.
NEW_TOKEN_KEY = "xenpanel_new_api_token"


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=64,
        help_text=gettext_lazy("What uses it, such as grading-script."),
    )
    days = forms.IntegerField(
        label=gettext_lazy("Expires in (days)"),
        min_value=1,
        max_value=api_tokens.MAX_DAYS,
        initial=api_tokens.DEFAULT_DAYS,
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_id = "api-token-form"
        self.helper.layout = Layout(
            Div(Div("name", css_class="col-md-8"), Div("days", css_class="col-md-4"), css_class="row"),
            Submit("submit", gettext_lazy("Create token")),
        )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def api_token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's tokens, the one just made (once), and the form to make one."""
    user = request.user
    form = ApiTokenForm()
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            try:
                token, plain = api_tokens.create_token(user, form.cleaned_data["name"], form.cleaned_data["days"])
            except ServiceError as e:
                form.add_error(e.field if e.field in form.fields else None, e.message)
            else:
                request.session[NEW_TOKEN_KEY] = {"pk": token.pk, "token": plain}
                messages.success(request, _("Token %(name)s created.") % {"name": token.name})
                return redirect("api_tokens")
    new = request.session.pop(NEW_TOKEN_KEY, None)
    ctx = {
        "form": form,
        "tokens": ApiToken.objects.filter(user=user).order_by("-created_at", "-pk"),
        "new_token": new,
        "api_root": request.build_absolute_uri(reverse("api:guests").rsplit("/", 1)[0]),
        "docs_url": reverse("api:openapi-view"),
    }
    return render(request, "labs/api_tokens.html", ctx)


@require_http_methods(["GET", "POST"])
@login_required
def api_token_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Ask (GET), then revoke (POST) one of the user's own tokens."""
    token = get_api_token_for_user(request, pk)
    if request.method == "POST":
        api_tokens.revoke_token(request.user, token)
        messages.success(
            request, _("Token %(name)s revoked: scripts using it are refused from now on.") % {"name": token.name}
        )
        return redirect("api_tokens")
    return render(request, "labs/api_token_revoke.html", {"token": token})
