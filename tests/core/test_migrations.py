"""The models and the committed migrations agree, so a deploy's `migrate` builds the schema the code expects."""

from __future__ import annotations

import io

from django.core.management import call_command


def test_no_model_change_lacks_a_migration(db):
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as e:
        raise AssertionError(f"models changed without a migration:\n{out.getvalue()}") from e
    assert "No changes detected" in out.getvalue()
