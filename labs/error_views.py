"""The panel's answers when a request fails outside its own views.

- A roster pasted into the new-batch form that is bigger than Django reads
  (DATA_UPLOAD_MAX_MEMORY_SIZE) fails in the CSRF middleware, before the
  view runs; the 400 handler puts it back on the form as an error.
- The job-queue dashboard (django-rq, /rq/) with Redis down answers a page
  that says so, not a 500.
"""

from __future__ import annotations

import logging
from functools import wraps

import redis.exceptions
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, reverse
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.views import defaults

from labs.access import roles_for
from labs.forms import MAX_ROSTER_BYTES, LabBatchForm

logger = logging.getLogger(__name__)

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: the new-batch form again for a roster too big to read; else the panel's 400 page."""
    if (
        isinstance(exception, RequestDataTooBig)
        and request.path_info == reverse("lab_create")
        and hasattr(request, "user")
        and roles_for(request)["instructor"]
    ):
        return _roster_too_big(request)
    return defaults.bad_request(request, exception)


def _roster_too_big(request: HttpRequest) -> HttpResponse:
    """The empty form with the reason on the roster: nothing of the request was read, nothing was created."""
    form = LabBatchForm()
    form.cleaned_data = {}  # unbound, so not cleaned: add_error() removes the field from it
    form.add_error(
        "roster_text",
        _(
            "The roster is too large (at most %(kb)s KiB, about %(lines)s lines). Nothing was created, and the"
            " form could not be read back: fill it in again with a shorter roster, or split the class into"
            " several labs."
        )
        # A roster line (username, full name, e-mail) is some 40 to 60 bytes.
        % {"kb": MAX_ROSTER_BYTES // 1024, "lines": number_format(MAX_ROSTER_BYTES // 64, force_grouping=True)},
    )
    return render(request, "labs/lab_create.html", {"form": form}, status=413)


def redis_guard(view):
    """Wrap a django-rq view: Redis down gives a page that says so (503), not a 500."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except REDIS_DOWN as e:
            logger.warning("job queue dashboard: Redis is not answering: %s", e)
            return render(request, "rq_unavailable.html", status=503)

    return guarded


def rq_urls() -> tuple[list[URLPattern], str]:
    """django-rq's URLs (its "django_rq" namespace) with every view behind redis_guard, for include()."""
    from django_rq.urls import app_name, urlpatterns

    return [URLPattern(p.pattern, redis_guard(p.callback), p.default_args, p.name) for p in urlpatterns], app_name
