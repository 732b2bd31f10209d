"""Issue 15: a failed VM in the right words for the right person.

Its student reads a plain sentence (what happened, whether retrying may help,
that the instructors see the details); the lab's instructors and admins read
the raw libxl lines, on the guest page and in its job log.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.models import Guest, Task
from labs.services import api_tokens
from labs.services.explain import plain_failure

LIBXL = (
    "create: libxl: error: libxl_device.c:1290:device_hotplug_child_death_cb: script: Could not find bridge"
    " device xenbr9"
)


@pytest.fixture
def failed(alice_guest):
    Guest.objects.filter(pk=alice_guest.pk).update(status=Guest.Status.FAILED, last_error=LIBXL)
    Task.objects.create(
        kind="provision",
        guest=alice_guest,
        lab=alice_guest.lab,
        status=Task.Status.FAILED,
        step="create",
        steps_done=4,
        steps_total=5,
        log=f"step create\nFAILED in step create:\n{LIBXL}",
        error=LIBXL,
    )
    return alice_guest


def test_the_student_reads_a_plain_sentence_not_libxl(client, alice, failed):
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[failed.pk])).content.decode()
    assert "libxl" not in body and "Could not find bridge" not in body
    assert "The VM could not be connected to the lab&#x27;s network on its host." in body
    assert "Trying again will not help until the host is fixed." in body
    assert "The lab&#x27;s instructors see the details." in body


@pytest.mark.parametrize("who", ["ivy", "admin_user"])
def test_instructors_and_admins_read_the_raw_lines(client, request, failed, who):
    client.force_login(request.getfixturevalue(who))
    body = client.get(reverse("guest_detail", args=[failed.pk])).content.decode()
    assert "libxl_device.c:1290" in body and "Could not find bridge device xenbr9" in body
    assert "FAILED in step create" in body  # the job's log too


def test_the_live_fragment_follows_the_same_rule(client, alice, ivy, failed):
    url = reverse("guest_live", args=[failed.pk])
    client.force_login(alice)
    assert "libxl" not in client.get(url).content.decode()
    client.force_login(ivy)
    assert "libxl_device.c:1290" in client.get(url).content.decode()


@pytest.mark.parametrize(
    ("raw", "what", "retry"),
    [
        ("create: xc: error: panic: can't allocate low memory for domain: Out of memory", "enough free memory", True),
        ('volumes: lvcreate: Volume group "vg0" has insufficient free space (10 extents)', "disk space", False),
        ("create: libxl: error: timed out waiting for hotplug", "too long to answer", True),
        ("create: The worker running this job stopped (killed or crashed)", "interrupted", True),
        ("config: something nobody foresaw", "reported an error", True),
    ],
)
def test_each_cause_in_words(raw, what, retry):
    words = plain_failure(raw)
    assert what in words
    assert ("Trying again may help" in words) is retry
    assert words.endswith("The lab's instructors see the details.")


def test_in_portuguese_too(client, alice, failed):
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[failed.pk]), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "Os professores do laboratório veem os detalhes." in body


def test_the_api_follows_the_same_rule(client, alice, ivy, failed):
    task = Task.objects.get(guest=failed)
    for user, sees_raw in ((alice, False), (ivy, True)):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens.create_token(user, 'script', 30)[1]}"}
        guest = client.get(reverse("api:guest", args=[failed.pk]), **auth).json()
        polled = client.get(reverse("api:task", args=[task.pk]), **auth).json()
        assert ("libxl_device.c:1290" in guest["last_error"]) is sees_raw
        assert ("libxl" in polled["error"] + polled["log"]) is sees_raw
        assert ("libxl" in str(guest["latest_task"])) is sees_raw
        if not sees_raw:
            assert "could not be connected to the lab's network" in guest["last_error"] + polled["error"]
