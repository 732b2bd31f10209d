"""Admins follow template builds in the panel as they follow lab batches: a list, a build page with the steps'
progress bar and the log, polled live while the build runs; and the golden LV is built from a button."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from labs.models import Host, Task
from tests.ui.conftest import messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def build(host, template, admin_user) -> Task:
    return Task.objects.create(
        kind="build_template",
        host=host,
        actor=admin_user,
        target=template.name,
        status=Task.Status.RUNNING,
        step="bootstrap",
        steps_done=1,
        steps_total=3,
        log="12:00:00.000 step check\n12:00:01.000 $ debootstrap --variant=minbase bookworm",
    )


def test_the_list_shows_templates_and_recent_builds(client, admin_user, template, build):
    client.force_login(admin_user)
    page = client.get(reverse("template_list")).content.decode()
    assert reverse("template_detail", args=[template.pk]) in page
    assert reverse("template_build", args=[build.pk]) in page
    assert "build the template" in page and "install Debian (debootstrap)" in page
    # The path's help is all there (a "<name>" would be taken for HTML and lost).
    assert "Empty: /srv/xenpanel/templates/ and the template" in page
    # The admins' menu leads there.
    assert reverse("template_list") in client.get(reverse("lab_list")).content.decode()


def test_the_build_page_shows_progress_and_log_and_polls_while_running(client, admin_user, build):
    client.force_login(admin_user)
    page = client.get(reverse("template_build", args=[build.pk])).content.decode()
    assert "1 of 3 steps done" in page and 'aria-valuenow="1"' in page
    assert "$ debootstrap --variant=minbase bookworm" in page
    assert ".." not in page.split("<main", 1)[-1].split("Log", 1)[0]  # no date ending a sentence twice
    live = reverse("template_build_live", args=[build.pk])
    assert f'hx-get="{live}"' in page
    # The live fragment follows the row, and stops polling once the build has ended.
    Task.objects.filter(pk=build.pk).update(
        status=Task.Status.SUCCEEDED, steps_done=3, step="register", log=build.log + "\nregistered template debian-12"
    )
    fragment = client.get(live, HTTP_HX_REQUEST="true").content.decode()
    assert "3 of 3 steps done" in fragment and "registered template debian-12" in fragment
    assert "hx-get" not in fragment


def test_a_failed_build_shows_its_error(client, admin_user, build):
    Task.objects.filter(pk=build.pk).update(status=Task.Status.FAILED, error="bootstrap: debootstrap failed (exit 1)")
    client.force_login(admin_user)
    page = client.get(reverse("template_build", args=[build.pk])).content.decode()
    assert "bootstrap: debootstrap failed (exit 1)" in page and "bg-danger" in page


def test_the_form_queues_a_build_and_leads_to_its_page(client, admin_user, host):
    client.force_login(admin_user)
    response = client.post(
        reverse("template_list"), {"name": "deb13", "host": host.pk, "tool": "debootstrap", "init": "sysvinit"}
    )
    task = Task.objects.get(kind="build_template")
    assert response.status_code == 302 and response["Location"] == reverse("template_build", args=[task.pk])
    assert task.args["path"] == "/srv/xenpanel/templates/deb13" and task.actor == admin_user
    assert task.args["init"] == "sysvinit"
    # A bad value is refused with the dom0 layer's words, and nothing is queued.
    page = client.post(
        reverse("template_list"),
        {"name": "x", "host": host.pk, "tool": "debootstrap", "init": "systemd", "mirror": "ftp://m/debian"},
    ).content.decode()
    assert "invalid mirror" in page and Task.objects.count() == 1


def test_a_new_build_may_not_take_an_existing_template_s_name(client, admin_user, host, template):
    client.force_login(admin_user)
    page = client.post(
        reverse("template_list"), {"name": template.name, "host": host.pk, "tool": "debootstrap", "init": "systemd"}
    ).content.decode()
    assert "A template of that name exists: rebuild it from its page." in page and not Task.objects.exists()


def test_the_golden_button_asks_first_then_queues(client, admin_user, host, template):
    client.force_login(admin_user)
    url = reverse("template_rebuild", args=[template.pk, "golden"])
    detail = client.get(reverse("template_detail", args=[template.pk])).content.decode()
    assert url in detail
    # No host has a thin pool yet: the page says so.
    assert "No host has a thin pool" in client.get(url).content.decode()
    Host.objects.filter(pk=host.pk).update(thin_pool="pool0")
    page = client.get(url).content.decode()
    assert "csrfmiddlewaretoken" in page and 'name="confirm"' in page and "thin snapshots" in page
    assert page.index('name="host"') < page.index('name="confirm"')  # the host first, then the box
    # Without the ticked box nothing is queued.
    response = client.post(url, {"host": host.pk})
    assert "Nothing was done" in " ".join(messages_of(response)) and not Task.objects.exists()
    response = client.post(url, {"host": host.pk, "confirm": "on"})
    task = Task.objects.get(kind="build_golden")
    assert response["Location"] == reverse("template_build", args=[task.pk])
    assert task.args == {"template_id": template.pk, "volume": f"xenpanel-golden-{template.pk}"}


def test_a_host_without_a_thin_pool_cannot_be_chosen(client, admin_user, host, template):
    Host.objects.create(name="dom0-b", queue_name="dom0-b", volume_group="vg0", thin_pool="pool0")
    client.force_login(admin_user)
    client.post(reverse("template_rebuild", args=[template.pk, "golden"]), {"host": host.pk, "confirm": "on"})
    assert not Task.objects.exists()


def test_the_build_page_reads_in_portuguese(client, admin_user, build):
    client.force_login(admin_user)
    page = client.get(reverse("template_build", args=[build.pk]), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "1 de 3 etapas concluídas" in page and "Construir o modelo" in page


def test_the_template_page_says_where_its_golden_lv_was_built(client, admin_user, host, template):
    template.golden_volume = f"xenpanel-golden-{template.pk}"
    template.save(update_fields=["golden_volume"])
    Task.objects.create(
        kind="build_golden",
        host=host,
        target=template.name,
        status=Task.Status.SUCCEEDED,
        finished_at=timezone.now(),
        args={"template_id": template.pk},
    )
    Task.objects.create(kind="build_golden", host=host, target=template.name, status=Task.Status.FAILED)
    client.force_login(admin_user)
    page = client.get(reverse("template_detail", args=[template.pk])).content.decode()
    assert page.count("Built on: dom0-a (") == 1


def test_a_rebuild_keeps_the_variant_of_the_last_build(client, admin_user, host, template):
    Task.objects.create(
        kind="build_template",
        host=host,
        target=template.name,
        status=Task.Status.SUCCEEDED,
        finished_at=timezone.now(),
        args={"path": template.rootfs_path, "suite": "bookworm", "init": "sysvinit", "tool": "mmdebstrap"},
    )
    client.force_login(admin_user)
    url = reverse("template_rebuild", args=[template.pk, "tree"])
    response = client.post(url, {"host": host.pk, "confirm": "on"})
    task = Task.objects.filter(status=Task.Status.QUEUED).get()
    assert response["Location"] == reverse("template_build", args=[task.pk])
    assert (task.args["init"], task.args["tool"], task.args["replace"]) == ("sysvinit", "mmdebstrap", True)
    assert task.args["path"] == template.rootfs_path
