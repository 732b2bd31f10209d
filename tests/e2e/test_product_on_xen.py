"""The whole product on a real Xen 4.17 host: browser -> panel -> RQ worker inside dom0 -> a booted student VM.

1. The session testbed (tests/testbed/) boots Xen with a dom0 that has a VG,
   an internal-only bridge and a bootable template directory.
2. The dom0 is set up by running deploy/dom0-setup.md block by block (or its
   stated testbed stand-ins): xenpanel with its pinned requirements in
   /opt/xenpanel/.venv, /etc/xenpanel/xenpanel.env with XENPANEL_DOM0=xen,
   and `manage.py rqworker <queue>` as the systemd unit would start it. It
   reaches this machine's Redis and pytest-django's PostgreSQL test database
   through QEMU guestfwd rules to 127.0.0.1; the NIC keeps `restrict=on`.
3. The panel is live_server; `manage.py sync_loop` runs beside it and queues
   the state syncs on the dom0's queue, as in production.
4. Headless Chromium: an instructor creates a 2-student batch, the bar
   reaches 2/2, a student sees her VM running with its IP and console
   command, reboots it, and the instructor tears the lab down.
5. dom0 is inspected over ssh during and after: volumes, root filesystems,
   /etc/xen/<name>.cfg, `xl list`, guest consoles; afterwards nothing is left.
6. A volume group too small for the batch: refused up front when the panel
   knows (clear error, nothing created), and failing cleanly on the host when
   it fills up behind the panel's back.

The guests boot the testbed's busybox template, not a debootstrap one: the
testbed has no internet for debootstrap, and under QEMU's emulation a
systemd guest takes minutes to boot where this one takes seconds, while the
per-guest files xenpanel writes (hostname, hosts, interfaces, fstab) are the
same. `manage.py build_template` is covered by test_template_build.py and,
here, by its dry run from the guide.

Phase timings (testbed boot, provisioning, guest boot, teardown...) are
printed with -s and in pytest's terminal summary.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from labs.models import Guest, Host, IpPool, Lab, LabTemplate, Task
from tests.e2e.harness import (
    BOOTED,
    BRIDGE,
    GUIDE_VG,
    MEMORY_MB,
    QUEUE,
    RAMDISK,
    ROOT_MB,
    SWAP_MB,
    VG,
    WORKER_PID,
    Dom0,
    panel_rows,
    revoke_dom0_credentials,
    run_module_on_postgresql,
    run_panel_steps,
    set_up_dom0_for_this_panel,
    start_sync_loop,
    stop_process,
)
from tests.testbed.fixtures import testbed, testbed_timings  # noqa: F401
from tests.testbed.testbed import Testbed
from tests.testbed.timing import Phases, timings_line, until
from tests.ui.test_browser import browser, click, driver, login, shot, text_of  # noqa: F401
from tests.ui.test_browser_roster import confirm_existing_accounts
from tests.ui.test_browser_ssh_keys import add_ssh_key

# transaction=True on every test, the guide's too: the dom0 worker needs the test database to exist.
pytestmark = [pytest.mark.testbed, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
STUDENTS = ("alice", "bob")
ROSTER = "".join(f"{u},{u.title()} Student,{u}@example.edu\n" for u in STUDENTS)
# Generous: under TCG on a busy 2-core machine an `xl create` alone can take a minute.
PROVISION_TIMEOUT = 1500
BOOT_TIMEOUT = 900


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dom0(testbed: Testbed, testbed_timings, django_db_setup, django_db_blocker) -> Dom0:  # noqa: F811
    """The testbed's dom0 set up by the guide, with its worker on QUEUE using this run's test database
    through the dom0's own restricted credentials."""
    with django_db_blocker.unblock():
        d = set_up_dom0_for_this_panel(testbed)
    testbed_timings.add("dom0 set up by deploy/dom0-setup.md", d.timings)
    print("\n" + timings_line("dom0 set-up", d.timings))
    yield d
    d.stop_worker()
    with django_db_blocker.unblock():
        revoke_dom0_credentials()


@pytest.fixture
def panel(dom0: Dom0, transactional_db, live_server, ivy, alice, bob):
    """Host/template/pool rows for the testbed dom0, and the sync loop running against this test database."""
    host, template, pool = panel_rows(dom0, "lab-net", "10.77.0.0/24")
    sync = start_sync_loop(dom0.env)
    yield SimpleNamespace(host=host, template=template, pool=pool)
    stop_process(sync)
    # The tests check the dom0 themselves; this only leaves it clean for the next one when a test failed.
    dom0.scrub("e2e", dom0.env, QUEUE)


# ------------------------------------------------------------------ helpers
def health_check(dom0: Dom0, host: Host) -> Host:
    """The guide's panel blocks (check_hosts, build_template --dry-run), then wait for the dom0's answer."""
    before = Host.objects.get(pk=host.pk).health_checked_at
    run_panel_steps(dom0.guide, dom0.values, dom0.env)
    return until(
        lambda: (
            Host.objects.filter(pk=host.pk).exclude(health_checked_at=before).exclude(health_checked_at=None).first()
        ),
        "the health check to come back from the dom0 worker",
        300,
        on_timeout=dom0.worker_log,
    )


def create_batch(
    browser,  # noqa: F811
    template: LabTemplate,
    pool: IpPool,
    name: str,
    slug: str,
    refused: bool = False,
) -> None:
    browser.go("/labs/new/")
    browser.find_element(By.ID, "id_name").send_keys(name)
    browser.find_element(By.ID, "id_slug").send_keys(slug)
    Select(browser.find_element(By.ID, "id_template")).select_by_visible_text(template.name)
    Select(browser.find_element(By.ID, "id_pool")).select_by_visible_text(str(pool))
    memory = browser.find_element(By.ID, "id_memory_mb")
    memory.clear()
    memory.send_keys(str(MEMORY_MB))
    browser.execute_script("arguments[0].value = arguments[1];", browser.find_element(By.ID, "id_roster_text"), ROSTER)
    click(browser, browser.find_element(By.CSS_SELECTOR, "#lab-batch-form [type=submit]"))
    # alice and bob have accounts already: the preview lists them, and nothing is created before "Create".
    # A batch that does not fit is refused at the preview.
    if not refused:
        confirm_existing_accounts(browser, list(STUDENTS))


def progress(browser) -> tuple[str, str, str]:  # noqa: F811
    """(done, failed, total) of the lab page's live progress bar."""
    try:
        el = browser.find_element(By.CSS_SELECTOR, "#lab-live [role=progressbar]")
        return el.get_attribute("data-done"), el.get_attribute("data-failed"), el.get_attribute("data-total")
    except StaleElementReferenceException:  # htmx swapped it while we read
        return ("", "", "")


def guests_now() -> list:
    return list(Guest.objects.values_list("domain_name", "status", "observed_state", "busy_with", "last_error"))


def teardown_in_browser(browser, lab: Lab) -> None:  # noqa: F811
    login(browser, "ivy")
    browser.go(f"/labs/{lab.pk}/")
    click(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Tear down the lab"))
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "id_confirm"))
    assert f"Tear down {lab.name}?" in browser.find_element(By.TAG_NAME, "h1").text
    click(browser, browser.find_element(By.ID, "id_confirm"))
    click(browser, browser.find_element(By.XPATH, "//main//form//button[normalize-space()='Tear down the lab']"))
    WebDriverWait(browser, 30).until(lambda d: "jobs queued" in d.find_element(By.CSS_SELECTOR, ".messages").text)


def wait_torn_down(dom0: Dom0, lab: Lab) -> None:
    until(
        lambda: Lab.objects.filter(pk=lab.pk, status=Lab.Status.TORN_DOWN).exists(),
        f"lab {lab.slug} to be torn down",
        PROVISION_TIMEOUT,
        interval=2,
        on_timeout=lambda: f"guests: {guests_now()}\n{dom0.worker_log()}",
    )


def assert_nothing_left(dom0: Dom0, slug: str, pool: IpPool) -> None:
    """No domain, volume or config of the lab on the dom0; no Guest row; every address of the pool free."""
    stem = f"{slug}-"
    assert not [d for d in dom0.domains() if d.startswith(stem)], dom0.domains()
    assert not [v for v in dom0.volumes() if v.startswith(f"vm-{stem}")], dom0.volumes()
    assert not [c for c in dom0.configs() if stem in c], dom0.configs()
    assert not Guest.objects.exists(), guests_now()
    assert pool.guests.count() == 0


def console_boots(testbed: Testbed, name: str) -> int:  # noqa: F811
    return sum(BOOTED in line for line in testbed.console_log(name).splitlines())


def guest_modes(dom0: Dom0, device: str, directory: str) -> dict[str, str]:
    """name -> "<octal st_mode> <uid>:<gid>" of each entry of a directory in a guest's root filesystem ({} if none).

    debugfs (read-only, works while the guest runs) prints a missing directory's error on stderr and exits 0.
    """
    modes = {}
    for line in dom0.sh(["debugfs", "-R", f"ls -l {directory}", device]).splitlines():
        fields = line.split(None, 8)  # inode, mode, (type), uid, gid, size, date, time, name
        if len(fields) == 9 and fields[1].isdigit():
            modes[fields[8]] = f"{fields[1]} {fields[3]}:{fields[4]}"
    return modes


def fill_vg(dom0: Dom0, leave_mb: int) -> str:
    """A placeholder LV that leaves `leave_mb` MiB free in the VG; returns its name."""
    name = "xp-placeholder"
    dom0.sh(["lvcreate", "-q", "-y", "-L", f"{dom0.vg_free_mb() - leave_mb}m", "-n", name, VG])
    assert dom0.vg_free_mb() == leave_mb
    return name


# ------------------------------------------------------------------ scenario 1: the happy path
@pytest.mark.needs_postgres
@pytest.mark.timeout(3600)
def test_batch_to_booted_vms_reboot_and_teardown_on_real_xen(
    dom0,
    panel,
    browser,  # noqa: F811
    testbed,  # noqa: F811
    testbed_timings,  # noqa: F811
    new_ssh_key,
):
    phases = Phases()
    host, template, pool = panel.host, panel.template, panel.pool

    # --- the guide's last step: the panel checks the new host; the result shows on the Hosts page
    with phases("health check (dom0 worker)"):
        host = health_check(dom0, host)
    report = host.health_report
    assert host.health_ok is True, report
    assert set(report) == {"xen", "volume_group", "bridge", "guest_network", "dom0_reserve"}
    assert report["xen"]["detail"].startswith("Xen 4.17"), report
    assert f"bridge {BRIDGE} exists" == report["bridge"]["detail"]
    assert report["volume_group"]["detail"].startswith(f"{VG}: ")
    assert host.total_memory_mb and host.usable_memory_mb >= 2 * MEMORY_MB
    dry_run = dom0.guide.output_of("--dry-run")
    assert f"would queue on {QUEUE}" in dry_run
    assert "debootstrap --variant=minbase --arch=amd64 --components=main --include=systemd-sysv," in dry_run
    assert f" {settings.XENPANEL_TEMPLATE_SUITE} /srv/xenpanel/templates/debian-12.partial " in dry_run

    # --- alice adds an SSH key before her VM exists: the worker in dom0 writes it into the guest
    alice_key, _ = new_ssh_key("alice@e2e")
    add_ssh_key(browser, "alice", alice_key)

    login(browser, "ivy")
    browser.go("/hosts/")
    row = browser.find_element(By.XPATH, f"//main//tr[td/a[normalize-space()='{QUEUE}']]")
    assert row.find_elements(By.XPATH, ".//span[contains(@class, 'badge') and normalize-space()='healthy']"), row.text
    assert "Xen 4.17" in row.text, row.text
    browser.go(f"/hosts/{host.pk}/")
    main = browser.find_element(By.TAG_NAME, "main").text
    assert f"Bridge {BRIDGE} exists." in main and "MiB reserved for dom0" in main, main
    shot(browser, "e2e-host")

    # --- 4.1 the instructor creates a 2-student batch; 4.2 the bar reaches 2/2
    slug = "e2e"
    with phases("provisioning (submit to 2/2)"):
        create_batch(browser, template, pool, "Networks on Xen", slug)
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "lab-live"))
        lab = Lab.objects.get(slug=slug)
        seen = set()

        def bar_full(d) -> bool:
            done, failed, total = progress(d)
            seen.add(done)
            assert failed in ("", "0"), f"a guest failed: {guests_now()}"
            return (done, total) == ("2", "2")

        try:
            WebDriverWait(browser, PROVISION_TIMEOUT, poll_frequency=1).until(bar_full)
        except Exception:
            shot(browser, "e2e-lab-timeout")
            raise AssertionError(f"bar stuck at {seen}; guests {guests_now()}\n{dom0.worker_log()}") from None
    assert "2 of 2 VMs ready" in text_of(browser, "#lab-live")
    guests = {g.student.username: g for g in Guest.objects.select_related("student")}
    assert sorted(guests) == list(STUDENTS)
    shot(browser, "e2e-lab-ready")

    # --- 5. inside dom0, while the lab exists
    volumes = dom0.volumes()
    domains = dom0.domains()
    for g in guests.values():
        name = g.domain_name
        assert (g.root_lv, g.swap_lv) == (f"vm-{name}.raiz", f"vm-{name}.swap")
        assert volumes[g.root_lv] == ROOT_MB and volumes[g.swap_lv] == SWAP_MB, volumes
        assert name in domains, domains
        device = f"/dev/{VG}/{g.root_lv}"
        assert dom0.guest_file(device, "/etc/hostname") == f"{g.hostname}\n"
        interfaces = dom0.guest_file(device, "/etc/network/interfaces")
        assert f"address {g.ip}" in interfaces and "gateway 10.77.0.1" in interfaces, interfaces
        assert f"{g.ip}\t{g.hostname}.lab.example.edu\t{g.hostname}" in dom0.guest_file(device, "/etc/hosts")
        cfg = dom0.sh(["cat", f"/etc/xen/{name}.cfg"])
        assert f'name = "{name}"' in cfg and f"memory = {MEMORY_MB}" in cfg, cfg
        assert f'kernel = "{dom0.kernel}"' in cfg and f'ramdisk = "{RAMDISK}"' in cfg, cfg
        assert f"target=/dev/{VG}/{g.root_lv}" in cfg and f"target=/dev/{VG}/{g.swap_lv}" in cfg, cfg
        assert f"mac={g.mac},bridge={BRIDGE}" in cfg, cfg
        assert f"auto/{name}.cfg" in dom0.configs()
        # The student's SSH keys, by the real Rootfs.customize: root-owned /root/.ssh 0700, the file 0600.
        if g.student.username == "alice":
            assert dom0.guest_file(device, "/root/.ssh/authorized_keys") == alice_key + "\n"
            assert guest_modes(dom0, device, "/root")[".ssh"] == "40700 0:0"
            assert guest_modes(dom0, device, "/root/.ssh")["authorized_keys"] == "100600 0:0"
        else:
            assert "authorized_keys" not in guest_modes(dom0, device, "/root/.ssh")

    # --- each guest's console prints its boot marker with its own name and address
    with phases("guest boot (2/2 to both consoles' markers)"):
        for g in guests.values():
            line = testbed.wait_console(g.domain_name, BOOTED, timeout=BOOT_TIMEOUT)
            assert f"host={g.hostname} ip={g.ip} root=/dev/xvda1" in line, line
            assert int(re.search(r"swap_kb=(\d+)", line).group(1)) > 0, line

    # --- 4.3 a student sees her VM running, its IP and how to reach its console
    alice = guests["alice"]
    browser.delete_all_cookies()
    login(browser, "alice")
    assert browser.current_url.endswith("/vms/")
    click(browser, browser.find_element(By.LINK_TEXT, alice.domain_name))
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "guest-live"))
    WebDriverWait(browser, 120).until(lambda d: text_of(d, "#guest-live .state-badge").startswith("running"))
    main = browser.find_element(By.TAG_NAME, "main").text
    assert alice.ip in main and alice.mac in main, main
    # No dom0 command for a student (admins only); the SSH card says the lab's network is closed.
    commands = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "code.console-cmd")]
    assert not [c for c in commands if "console" in c], commands
    assert "cannot be reached by SSH from outside the lab" in text_of(browser, "#guest-ssh")
    shot(browser, "e2e-student-vm")

    # --- 4.4 she reboots it; the state goes back to running, and dom0 saw a real second boot
    boots = console_boots(testbed, alice.domain_name)
    domid = dom0.sh(["xl", "domid", alice.domain_name]).strip()
    with phases("student reboot (click to running)"):
        click(
            browser, browser.find_element(By.XPATH, "//section[@id='guest-live']//button[normalize-space()='Reboot']")
        )
        WebDriverWait(browser, 60).until(
            lambda d: "Requested: Reboot of" in d.find_element(By.CSS_SELECTOR, ".messages").text
        )

        def back_to_running(d) -> bool:
            text, badge = text_of(d, "#guest-live"), text_of(d, "#guest-live .state-badge")
            return badge.startswith("running") and "Working…" not in text and "…" not in badge

        WebDriverWait(browser, BOOT_TIMEOUT, poll_frequency=1).until(back_to_running)
        testbed.wait_console(alice.domain_name, BOOTED, count=boots + 1, timeout=BOOT_TIMEOUT)
    assert dom0.sh(["xl", "domid", alice.domain_name]).strip() != domid
    assert Task.objects.get(guest=alice, kind="reboot").status == Task.Status.SUCCEEDED
    shot(browser, "e2e-student-rebooted")

    # --- 4.5 the instructor tears the lab down; 5. nothing is left on the dom0
    with phases("teardown (confirm to torn down)"):
        teardown_in_browser(browser, lab)
        wait_torn_down(dom0, lab)
    browser.go(f"/labs/{lab.pk}/")
    assert "Status: torn down." in browser.find_element(By.TAG_NAME, "main").text
    assert_nothing_left(dom0, slug, pool)

    tasks = Task.objects.filter(kind="provision")
    phases.seconds["dom0 commands in provisioning jobs"] = sum(t.dom0_seconds for t in tasks)
    print("\n" + phases.line("e2e on real Xen"))
    testbed_timings.add("e2e: browser -> dom0 worker -> booted VMs", phases.seconds)


# ------------------------------------------------------------------ scenario 2: a volume group too small
@pytest.mark.needs_postgres
@pytest.mark.timeout(3600)
def test_a_vg_too_small_is_refused_in_the_browser_and_nothing_is_created(dom0, panel, browser, testbed_timings):  # noqa: F811
    host, template, pool = panel.host, panel.template, panel.pool
    phases = Phases()
    per_guest = ROOT_MB + SWAP_MB
    placeholder = fill_vg(dom0, leave_mb=per_guest - 16)
    try:
        with phases("health check sees the full VG"):
            host = health_check(dom0, host)
        assert host.vg_free_mb == per_guest - 16 and host.health_ok, host.health_report

        login(browser, "ivy")
        with phases("refused submit"):
            create_batch(browser, template, pool, "Too big", "e2ea", refused=True)
            WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".invalid-feedback, .alert"))
        text = browser.find_element(By.TAG_NAME, "main").text
        assert (
            f"Not enough host capacity: 2 guest(s) need {per_guest} MiB of disk each for their root and swap volumes"
            f" (free in the hosts' volume groups: {QUEUE}: {per_guest - 16} MiB)." in text
        ), text
        assert browser.current_url.endswith("/labs/new/")
        shot(browser, "e2e-vg-too-small")

        assert not Lab.objects.exists() and not Task.objects.exists()
        assert_nothing_left(dom0, "e2ea", pool)
        assert dom0.volumes() == {placeholder: dom0.volumes()[placeholder]}
    finally:
        dom0.sh(["lvremove", "-q", "-y", f"{VG}/{placeholder}"])
    testbed_timings.add("e2e: VG too small, refused", phases.seconds)


@pytest.mark.needs_postgres
@pytest.mark.timeout(3600)
def test_a_vg_filled_behind_the_panels_back_fails_on_the_host_and_cleans_up(dom0, panel, browser, testbed_timings):  # noqa: F811
    host, template, pool = panel.host, panel.template, panel.pool
    phases = Phases()
    host = health_check(dom0, host)  # the panel now believes the whole VG is free
    assert host.vg_free_mb > 1000
    # Room for one guest and one more root volume: the second guest's swap
    # volume fails after its root volume was made, which the job must remove.
    placeholder = fill_vg(dom0, leave_mb=ROOT_MB + SWAP_MB + ROOT_MB + 16)
    slug = "e2eb"
    try:
        login(browser, "ivy")
        with phases("provisioning until one fails"):
            create_batch(browser, template, pool, "Filled behind our back", slug)
            WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "lab-live"))
            try:
                WebDriverWait(browser, PROVISION_TIMEOUT, poll_frequency=1).until(
                    lambda d: progress(d) == ("1", "1", "2")
                )
            except Exception:
                raise AssertionError(
                    f"progress {progress(browser)}; guests {guests_now()}\n{dom0.worker_log()}"
                ) from None
        lab = Lab.objects.get(slug=slug)
        # The host builds two guests at a time: whichever made its swap volume first is the one that fits.
        by_status = {g.status: g for g in Guest.objects.filter(lab__slug=slug)}
        assert set(by_status) == {Guest.Status.READY, Guest.Status.FAILED}, guests_now()
        ok, failed = by_status[Guest.Status.READY], by_status[Guest.Status.FAILED]
        assert failed.last_error.startswith('volumes: lvcreate: Volume group "vg0" has insufficient free space')
        # The browser shows why, on the lab page.
        cell = browser.find_element(By.CSS_SELECTOR, f"#lab-live tr[data-guest='{failed.domain_name}'] td.last-error")
        assert "insufficient free space" in cell.get_attribute("textContent"), cell.get_attribute("textContent")
        shot(browser, "e2e-vg-filled")
        # The failed job removed what it had made; the other guest is intact.
        volumes = dom0.volumes()
        assert failed.root_lv not in volumes and failed.swap_lv not in volumes, volumes
        assert failed.domain_name not in dom0.domains()
        assert not [c for c in dom0.configs() if failed.domain_name in c]
        assert ok.root_lv in volumes and ok.domain_name in dom0.domains()

        with phases("teardown"):
            teardown_in_browser(browser, lab)
            wait_torn_down(dom0, lab)
        assert_nothing_left(dom0, slug, pool)
    finally:
        dom0.sh(["lvremove", "-q", "-y", f"{VG}/{placeholder}"])
    testbed_timings.add("e2e: VG filled behind the panel's back", phases.seconds)


# ------------------------------------------------------------------ the guide itself
@pytest.mark.needs_postgres
def test_the_dom0_guide_ran_on_the_testbed_and_matches_the_worker_unit(dom0):
    guide = dom0.guide
    dom0_steps = guide.dom0_steps()
    ran = [r.step for r in guide.ran if r.step.where == "dom0"]
    assert ran == dom0_steps and all(r.rc == 0 for r in guide.ran if r.step.where == "dom0")
    # Stand-ins only where the guide says the testbed cannot run the real thing.
    stand_ins = {s.documented.code.split("\n")[0] for s in dom0_steps if s.stand_in}
    assert stand_ins == {
        "apt-get update",
        "update-grub",
        "ifup $BRIDGE",
        "git clone https://git.example.edu/xenpanel.git /opt/xenpanel",
        "cp /opt/xenpanel/deploy/xenpanel-rqworker@.service /etc/systemd/system/",
        "cp /opt/xenpanel/deploy/xenpanel-console-agent@.service /etc/systemd/system/",
        "grep -E '^XENDOMAINS_(SAVE|RESTORE|AUTO)=' /etc/default/xendomains",
    }, stand_ins
    # The worker runs as the unit says: its ExecStart with %i = the queue, in its WorkingDirectory, as
    # root, with its EnvironmentFile (the stand-in reads these from the unit, so they cannot drift).
    unit = (ROOT / "deploy" / "xenpanel-rqworker@.service").read_text()
    field = {k: v for k, v in re.findall(r"^(\w+)=(.*)$", unit, re.M)}
    pid = dom0.sh(["cat", WORKER_PID]).strip()
    cmdline = dom0.sh(["cat", f"/proc/{pid}/cmdline"]).split("\0")[:-1]
    assert cmdline == field["ExecStart"].replace("%i", QUEUE).split(), cmdline
    assert dom0.sh(["readlink", f"/proc/{pid}/cwd"]).strip() == field["WorkingDirectory"]
    assert field["User"] == "root" and dom0.sh(["stat", "-c", "%U", f"/proc/{pid}"]).strip() == "root"
    environ = dom0.sh(["cat", f"/proc/{pid}/environ"]).split("\0")
    assert field["EnvironmentFile"] == "/etc/xenpanel/xenpanel.env"
    assert "XENPANEL_DOM0=xen" in environ and f"DATABASE_URL={dom0.credentials.database_url}" in environ
    # Its own credentials and settings profile; none of the panel's secrets.
    assert "DJANGO_SETTINGS_MODULE=xenpanel.settings_dom0" in environ
    assert not [e for e in environ if e.startswith("SECRET_KEY=")]
    assert f"REDIS_URL={dom0.credentials.redis_url}" in environ
    # What the blocks did to the dom0.
    assert dom0.worker_alive()
    assert 'autoballoon="off"' in dom0.sh(["grep", "-x", 'autoballoon="off"', "/etc/xen/xl.conf"])
    assert "dom0_mem=1024M,max:1024M" in dom0.sh(["cat", "/etc/default/grub.d/dom0-xen.cfg"])
    # The guests' bridge carries no dom0 address (its stanza is the file's last).
    stanza = dom0.sh(["cat", "/etc/network/interfaces"]).split(f"auto {BRIDGE}")[-1]
    assert f"bridge_ports {guide.settings['GUEST_NIC']}" in stanza and "address" not in stanza, stanza
    lvm = guide.output_of("vgcreate")  # ran for real, on a loop device of its own
    assert f'Volume group "{GUIDE_VG}" successfully created' in lvm, lvm
    assert re.search(rf"^\s*{GUIDE_VG}\s+1\s+0\s+0\s", lvm, re.M), lvm
    assert set(guide.output_of("XENDOMAINS_").split()) == {
        "XENDOMAINS_SAVE=/var/lib/xen/save",
        "XENDOMAINS_RESTORE=true",
        "XENDOMAINS_AUTO=/etc/xen/auto",
    }
    assert re.search(r"^xen_version\s*:\s*4\.17\.", guide.output_of("xl info | grep"), re.M)


# ------------------------------------------------------------------ on SQLite: the same tests, on PostgreSQL
@pytest.mark.postgres_relay
@pytest.mark.timeout(7200)
def test_product_on_xen_runs_on_postgresql():
    """This run uses SQLite, which a worker inside QEMU cannot share: run this module again on PostgreSQL."""
    out = run_module_on_postgresql(HERE, passed=4)
    assert "deselected" in out, out[-2000:]
