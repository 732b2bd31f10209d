from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from labs.access import guests_for, is_instructor, labs_for


@login_required
def home(request: HttpRequest) -> HttpResponse:
    ctx = {
        "guests": guests_for(request.user).filter(student=request.user),
        "labs": labs_for(request.user)[:50],
        "is_instructor": is_instructor(request.user),
    }
    return render(request, "labs/home.html", ctx)
