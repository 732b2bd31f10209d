"""Student pages: My VMs, the guest page (console, password, controls) and its live fragment."""

from __future__ import annotations

from django.urls import reverse

from labs.models import Host, Lab, StudentQuota, Task
from tests.conftest import make_guest
from tests.ui.conftest import set_state


def test_my_vms_lists_only_own_guests(client, alice, alice_guest, bob_guest):
    client.force_login(alice)
    body = client.get(reverse("my_vms")).content.decode()
    assert alice_guest.domain_name in body
    assert str(alice_guest.ip) in body
    assert alice_guest.hostname in body
    assert bob_guest.domain_name not in body


def test_my_vms_shows_state_in_words_and_memory(client, alice, alice_guest):
    set_state(alice_guest, "p")
    client.force_login(alice)
    body = client.get(reverse("my_vms")).content.decode()
    assert 'state-badge">paused <span class="xl-letter"' in body
    assert "256 MiB" in body


def test_student_home_goes_to_my_vms_and_instructor_to_labs(client, alice, ivy):
    client.force_login(alice)
    assert client.get(reverse("home"))["Location"] == reverse("my_vms")
    client.force_login(ivy)
    assert client.get(reverse("home"))["Location"] == reverse("lab_list")


def test_guest_page_console_instructions(client, alice, admin_user, alice_guest):
    alice_guest.initial_password = "s3cret-Init"
    alice_guest.save()
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "s3cret-Init" in body
    assert "passwd root" in body
    # The dom0 command is for admins only (tests/ui/test_guest_ssh.py).
    client.force_login(admin_user)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert f"xl console {alice_guest.domain_name}" in body
    assert "<kbd>Ctrl</kbd>+<kbd>]</kbd>" in body
    assert "ssh " not in body


def test_guest_page_console_through_ssh_when_configured(client, admin_user, alice_guest, host):
    host.console_ssh = "student@dom0.example.edu"
    host.save()
    client.force_login(admin_user)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "ssh student@dom0.example.edu" in body
    assert f"xl console {alice_guest.domain_name}" in body


def test_xm_host_gets_xm_console(client, admin_user, alice_guest, host):
    host.toolstack = "xm"
    host.save()
    client.force_login(admin_user)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert f"xm console {alice_guest.domain_name}" in body


def _button(body: str, label: str) -> str:
    """The <button ...> tag whose text is `label`."""
    end = body.index(f">{label}</button>")
    return body[body.rindex("<button", 0, end) : end]


def test_running_guest_enables_only_sensible_buttons(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "disabled" in _button(body, "Start")
    assert "disabled" in _button(body, "Resume")
    assert "disabled" not in _button(body, "Reboot")
    assert "disabled" not in _button(body, "Shut down")
    # Destructive ones are links to their confirmation page while allowed.
    assert reverse("guest_confirm", args=[alice_guest.pk, "destroy"]) in body
    assert reverse("guest_confirm", args=[alice_guest.pk, "reset"]) in body


def test_stopped_guest_can_only_start_or_reset(client, alice, alice_guest):
    set_state(alice_guest, "")
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "disabled" not in _button(body, "Start")
    for label in ("Reboot", "Shut down", "Pause", "Destroy (pull the plug)", "Set memory"):
        assert "disabled" in _button(body, label), label
    assert reverse("guest_confirm", args=[alice_guest.pk, "destroy"]) not in body


def test_student_sees_no_delete_button_but_instructor_does(client, alice, ivy, alice_guest):
    set_state(alice_guest, "r")
    teardown = reverse("guest_confirm", args=[alice_guest.pk, "teardown"])
    client.force_login(alice)
    assert teardown not in client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    client.force_login(ivy)
    assert teardown in client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()


def test_busy_guest_shows_working_and_polls_fast(client, alice, alice_guest):
    set_state(alice_guest, "r", busy="reboot")
    Task.objects.create(kind="reboot", guest=alice_guest, status=Task.Status.RUNNING, steps_total=1)
    client.force_login(alice)
    body = client.get(reverse("guest_live", args=[alice_guest.pk])).content.decode()
    assert "Working…" in body
    assert "rebooting…" in body
    assert 'hx-trigger="every 2s' in body
    # Everything is disabled while a job runs.
    assert "disabled" in _button(body, "Shut down")


def test_idle_guest_polls_every_5s_and_shows_last_job(client, alice, alice_guest):
    set_state(alice_guest, "r")
    Task.objects.create(kind="reboot", guest=alice_guest, status=Task.Status.SUCCEEDED, steps_total=1, steps_done=1)
    client.force_login(alice)
    body = client.get(reverse("guest_live", args=[alice_guest.pk])).content.decode()
    assert "Working…" not in body
    assert 'hx-trigger="every 5s' in body
    assert "Last job: reboot, succeeded." in body
    assert f'hx-get="{reverse("guest_live", args=[alice_guest.pk])}?v=' in body


def test_live_fragment_is_a_fragment(client, alice, alice_guest):
    client.force_login(alice)
    body = client.get(reverse("guest_live", args=[alice_guest.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="guest-live"')


def test_job_log_is_shown(client, ivy, alice_guest):
    Task.objects.create(
        kind="provision",
        guest=alice_guest,
        status=Task.Status.FAILED,
        step="clone",
        steps_done=2,
        steps_total=5,
        log="lvcreate ok\nclone failed",
        error="No space left on device",
    )
    client.force_login(ivy)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert "clone failed" in body
    assert "No space left on device" in body
    assert "2/5" in body


def test_last_error_is_shown(client, alice, ivy, alice_guest):
    alice_guest.last_error = "xl create: out of memory"
    alice_guest.save()
    # The lab's instructors read it as the host wrote it; its student in words (tests/ui/test_failure_words.py).
    client.force_login(ivy)
    assert "xl create: out of memory" in client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    client.force_login(alice)
    assert "not have enough free memory" in client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()


def test_memory_field_carries_the_limits(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert 'name="memory_mb"' in body
    assert 'max="1024"' in body
    assert 'for="id_memory_mb"' in body


def test_memory_bound_counts_other_guests_the_quota_and_the_host(
    client, alice, bob, alice_guest, bob_guest, host, template, pool
):
    set_state(alice_guest, "r")
    other_lab = Lab.objects.create(name="Systems", slug="sys", template=template, pool=pool, memory_mb=256)
    make_guest(other_lab, alice, host, 3)  # 256 MiB more of alice's, in another lab
    elsewhere = Host.objects.create(name="dom0-b", queue_name="dom0-b", volume_group="vg0", total_memory_mb=4096)
    make_guest(other_lab, bob, elsewhere, 4)  # on another host: not allocated on alice's
    # dom0-a: 1024 MiB usable, 768 allocated (alice's two, bob's one), so 256 free plus her own 256.
    Host.objects.filter(pk=host.pk).update(total_memory_mb=2048, dom0_reserve_mb=1024)
    client.force_login(alice)
    url = reverse("guest_detail", args=[alice_guest.pk])
    assert 'max="512"' in client.get(url).content.decode()
    # A quota of 640 MiB, 256 of them held by her other guest: 384 for this one.
    StudentQuota.objects.create(user=alice, max_guests=3, max_memory_mb=640)
    body = client.get(url).content.decode()
    assert 'max="384"' in body and "Between 32 and 384 MiB." in body


def _version(body: str, url: str) -> str:
    return body.split(f'hx-get="{url}?v=', 1)[1].split('"', 1)[0]


def test_busy_guest_is_always_refreshed_then_idle_polls_get_204(client, alice, alice_guest):
    set_state(alice_guest, "r", busy="reboot")
    task = Task.objects.create(kind="reboot", guest=alice_guest, status=Task.Status.RUNNING, steps_total=1)
    client.force_login(alice)
    url = reverse("guest_live", args=[alice_guest.pk])
    page = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    # While a job runs the fragment carries no digest, so every poll renders.
    assert _version(page, url) == ""
    assert client.get(url, {"v": ""}).status_code == 200
    # The job finished: the fragment comes back with the new log, out of band.
    Task.objects.filter(pk=task.pk).update(status=Task.Status.SUCCEEDED, steps_done=1, log="xl reboot net101-alice")
    set_state(alice_guest, "r")
    r = client.get(url, {"v": ""})
    body = r.content.decode()
    assert r.status_code == 200
    assert '<section id="job-log"' in body and 'hx-swap-oob="true"' in body
    assert "xl reboot net101-alice" in body
    version = _version(body, url)
    assert version
    r = client.get(url, {"v": version})
    assert r.status_code == 204 and r.content == b""
    # A state change alone (the sync loop saw the domain stop) brings a new fragment.
    set_state(alice_guest, "")
    assert client.get(url, {"v": version}).status_code == 200
    # So does a new job, which marks the guest busy.
    set_state(alice_guest, "", busy="start")
    assert client.get(url, {"v": version}).status_code == 200


def test_idle_poll_needs_few_queries(client, alice, alice_guest, django_assert_max_num_queries):
    set_state(alice_guest, "r")
    client.force_login(alice)
    url = reverse("guest_live", args=[alice_guest.pk])
    version = _version(client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode(), url)
    # Session, user, the owner's guest with its lab: no role lookup for the owner.
    with django_assert_max_num_queries(3):
        assert client.get(url, {"v": version}).status_code == 204


def test_idle_poll_of_someone_elses_guest_goes_through_the_roles(
    client, ivy, charlie, admin_user, alice_guest, django_assert_max_num_queries
):
    set_state(alice_guest, "r")
    url = reverse("guest_live", args=[alice_guest.pk])
    for user in (ivy, admin_user):
        client.force_login(user)
        version = _version(client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode(), url)
        # The owner lookup misses; then the role check and the guest through guests_for().
        with django_assert_max_num_queries(5):
            assert client.get(url, {"v": version}).status_code == 204
    # A stranger with a valid-looking digest still gets nothing.
    client.force_login(charlie)
    assert client.get(url, {"v": version}).status_code == 404


def test_guest_page_query_count_stays_flat(client, alice, alice_guest, django_assert_max_num_queries):
    set_state(alice_guest, "r")  # running: the memory form needs its limits
    for n in range(12):
        Task.objects.create(kind="reboot", guest=alice_guest, status=Task.Status.SUCCEEDED, actor=alice, log=f"n{n}")
    client.force_login(alice)
    # Session, user, guest (with lab, template, pool, host, student and quota),
    # job log, the role check for the navigation, one aggregate for the
    # memory limits (the student's other guests and the host's allocation),
    # and one for the save points card (this VM's, and how many the student holds).
    with django_assert_max_num_queries(7):
        body = client.get(reverse("guest_detail", args=[alice_guest.pk])).content.decode()
    assert body.count('<summary id="task-show-') == 10  # the ten latest jobs, each with its log


def test_whoami_is_the_signed_in_users_name(client, alice, django_assert_max_num_queries):
    client.force_login(alice)
    with django_assert_max_num_queries(2):  # the session and the user: the floor of a logged-in request
        r = client.get(reverse("whoami"))
    assert r.status_code == 200 and r.content.decode() == "alice"


def test_logged_out_poll_sends_the_browser_to_login(client, alice_guest, lab):
    for url, page in (
        (reverse("guest_live", args=[alice_guest.pk]), reverse("guest_detail", args=[alice_guest.pk])),
        (reverse("lab_live", args=[lab.pk]), reverse("lab_detail", args=[lab.pk])),
    ):
        r = client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{page}")
        assert r.status_code == 200
        assert r["HX-Redirect"] == f"{reverse('login')}?next={page.replace('/', '%2F')}"
        assert r.content == b""
        # Without htmx it is the usual redirect.
        assert client.get(url).status_code == 302
