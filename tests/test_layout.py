"""One room per concern: the import boundaries and module sizes the README's layout promises."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from labs.services import queueing

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def test_no_module_in_labs_is_over_600_lines():
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "labs").rglob("*.py")
        if "migrations" not in p.parts and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


def test_the_web_process_and_the_admin_load_no_job_code():
    code = (
        "import django, sys; django.setup();"
        "import xenpanel.urls, labs.admin, labs.views, labs.forms;"
        "from django.contrib import admin; admin.autodiscover();"
        "print(sorted(m for m in sys.modules if m.startswith('labs.jobs')))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "xenpanel.settings", "SECRET_KEY": "x", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_dom0_layer_imports_no_django():
    code = (
        "import sys, labs.dom0, labs.dom0.simulated; print(sorted(m for m in sys.modules if m.startswith('django')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_job_in_the_table_is_a_function():
    for name, path in queueing.JOBS.items():
        module, _, func = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), func)), name
    for kind, (job, _timeout) in queueing.TASK_JOBS.items():
        assert job in queueing.JOBS, kind


def test_job_functions_are_named_only_in_the_table():
    # Anywhere else, a job is referred to by its key in queueing.JOBS.
    named = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "labs").rglob("*.py")
        if p != ROOT / "labs/services/queueing.py" and '"labs.jobs.' in p.read_text()
    ]
    assert named == []


def test_a_dom0_imports_nothing_only_the_panel_installs():
    """requirements-dom0.txt is what a dom0's venv holds: its worker and console agent must run on that."""
    panel_only = ("ldap", "ldapurl", "django_auth_ldap", "ninja", "pydantic", "channels", "uvicorn", "gunicorn")
    panel_only += ("crispy_forms", "crispy_bootstrap5", "whitenoise", "django_htmx")
    code = (
        "import sys, django; django.setup();"
        "import labs.jobs.guest, labs.jobs.host, labs.jobs.template, labs.jobs.worker, labs.jobs.console;"
        "from django.core.management import call_command;"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({panel_only!r})))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "xenpanel.settings_dom0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    listed = (ROOT / "requirements-dom0.txt").read_text().lower()
    assert "python-ldap" not in listed and "channels" not in listed
