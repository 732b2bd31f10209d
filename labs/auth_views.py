"""Account pages built on Django's own auth views.

Django's views do the security-sensitive work (old password check, the
configured validators, keeping this session valid and ending the others);
the subclass only sends the user home with a message, so no separate
"done" page is needed.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.messages.views import SuccessMessageMixin
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy


class PasswordChangeView(SuccessMessageMixin, auth_views.PasswordChangeView):
    success_url = reverse_lazy("home")
    success_message = gettext_lazy("Your password was changed.")
