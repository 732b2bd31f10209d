"""My SSH keys (the page and its form): every signed-in user lists, adds and deletes their own public keys.

The keys reach a VM only when a job provisions or resets it, so adding or
deleting one changes nothing in a VM that already exists; the page says so.
Another user's key is a 404, for admins too (the admin shows every key).
"""

from __future__ import annotations

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Field, Layout, Submit
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from labs.access import get_ssh_key_for_user
from labs.models import SshKey
from labs.services import ssh_keys
from labs.views import AuthenticatedHttpRequest


class SshKeyForm(forms.Form):
    """A public key as pasted; `labs.services.ssh_keys` parses and checks it."""

    key = forms.CharField(
        label=gettext_lazy("Public key"),
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off", "class": "font-monospace"}
        ),
        help_text=gettext_lazy(
            "One line from a file ending in .pub, such as ~/.ssh/id_ed25519.pub: ed25519, ECDSA, or RSA of at"
            " least 3072 bits, with a comment at the end. Make one with: ssh-keygen -t ed25519 -C you@laptop"
        ),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_id = "ssh-key-form"
        self.helper.layout = Layout(Field("key"), Submit("submit", gettext_lazy("Add key")))

    def forget_input(self) -> None:
        """Show the form again without what was typed (a private key must never be sent back)."""
        self.data = {**self.data, "key": ""}


# What was pasted may be a private key: keep it out of error reports.
@sensitive_post_parameters("key")
@require_http_methods(["GET", "POST"])
@login_required
def ssh_key_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's keys and the form to add one (GET), or the key added (POST)."""
    user = request.user
    form = SshKeyForm()
    if request.method == "POST":
        form = SshKeyForm(request.POST)
        if form.is_valid():
            try:
                key = ssh_keys.add_key(user, form.cleaned_data["key"])
            except ssh_keys.InvalidKey as e:
                form.add_error("key", e.message)
                if isinstance(e, ssh_keys.PrivateKeyPasted):
                    form.forget_input()
            else:
                messages.success(
                    request,
                    _("Key %(fingerprint)s (%(comment)s) added. It goes into your VMs when they are next reset.")
                    % {"fingerprint": key.fingerprint, "comment": key.comment},
                )
                return redirect("ssh_keys")
    ctx = {
        "form": form,
        "keys": SshKey.objects.filter(user=user).order_by("created_at", "pk"),
        "max_keys": ssh_keys.MAX_KEYS_PER_USER,
    }
    return render(request, "labs/ssh_keys.html", ctx)


@require_http_methods(["GET", "POST"])
@login_required
def ssh_key_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Ask (GET), then delete (POST) one of the user's own keys."""
    key = get_ssh_key_for_user(request, pk)
    if request.method == "POST":
        ssh_keys.delete_key(request.user, key)
        messages.success(
            request,
            _("Key %(fingerprint)s (%(comment)s) deleted. VMs that have it keep it until they are reset.")
            % {"fingerprint": key.fingerprint, "comment": key.comment},
        )
        return redirect("ssh_keys")
    return render(request, "labs/ssh_key_delete.html", {"key": key})
