"""A host's "jobs at a time" is set in the admin: 1 to 8, default 2; its worker pool reads it (labs.jobs.pool)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.jobs.pool import jobs_at_a_time
from labs.models import Host

pytestmark = pytest.mark.django_db


def test_the_admin_sets_a_hosts_jobs_at_a_time_within_its_bounds(client, admin_user, host, admin_form):
    assert host.jobs_at_a_time == 2 == jobs_at_a_time([host.queue_name])
    client.force_login(admin_user)
    page = reverse("admin:labs_host_change", args=[host.pk])
    data = admin_form(client.get(page), "host_form")
    for bad in ("0", "9", "two"):
        data["jobs_at_a_time"] = [bad]
        r = client.post(page, data)
        assert r.status_code == 200 and "jobs_at_a_time" in r.context["adminform"].form.errors
        assert Host.objects.get(pk=host.pk).jobs_at_a_time == 2
    data["jobs_at_a_time"] = ["4"]
    assert client.post(page, data).status_code == 302
    assert Host.objects.get(pk=host.pk).jobs_at_a_time == 4 == jobs_at_a_time([host.queue_name])
    assert b"Jobs at a time" in client.get(reverse("admin:labs_host_changelist")).content  # a column of the list


def test_the_pool_follows_the_most_of_its_queues_and_the_default_without_a_host(host):
    other = Host.objects.create(name="dom0-b", queue_name="dom0-b", volume_group="vg0", jobs_at_a_time=3)
    assert jobs_at_a_time(["default", host.queue_name, other.queue_name]) == 3
    assert jobs_at_a_time(["default"]) == 2
