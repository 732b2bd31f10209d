"""Toolstack: exact argv per verb (xl and xm), output parsers, error mapping.

The runner is scripted with captured outputs (tests/dom0/fixtures, see its
README); real captures from the Xen 4.17 testbed in fixtures/testbed/ are
parsed too when present.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labs.dom0.base import Domain, HostInfo
from labs.dom0.errors import (
    CommandTimeout,
    DomainExists,
    DomainNotFound,
    InvalidState,
    NotEnoughMemory,
    ToolstackError,
)
from labs.dom0.toolstack import (
    HOTPLUG_RETRIES,
    XENTOP_ARGV,
    Toolstack,
    classify_error,
    parse_info,
    parse_list_json,
    parse_list_table,
    parse_xentop,
)

TESTBED = Path(__file__).parent / "fixtures" / "testbed"


# --- parsers -------------------------------------------------------------------------
def test_parse_xl_list_table(fixture_text):
    assert parse_list_table(fixture_text("xl-list-4.17.txt")) == [
        Domain("Domain-0", 0, 1024, 2, "r-----"),
        Domain("web01", 3, 128, 1, "-b----"),
        Domain("db02", 4, 96, 1, "--p---"),
        Domain("lab1-ana.silva", 7, 256, 2, "r-----"),
        Domain("crashed01", 9, 128, 1, "---sc-"),
    ]


def test_state_letters_of_listed_domains(fixture_text):
    letters = {d.name: d.letter for d in parse_list_table(fixture_text("xl-list-4.17.txt"))}
    assert letters == {"Domain-0": "r", "web01": "b", "db02": "p", "lab1-ana.silva": "r", "crashed01": "c"}


def test_parse_list_with_dying_null_domain(fixture_text):
    domains = parse_list_table(fixture_text("xl-list-dying-null.txt"))
    assert [d.name for d in domains] == ["Domain-0", "vm-old", "(null)", "vm-going"]
    assert domains[2] == Domain("(null)", 5, 0, 2, "--psc-")
    assert domains[3].state == "--psc-" and domains[3].domid == 16


def test_parse_xm_list_table_skips_inactive_managed_domains(fixture_text):
    assert parse_list_table(fixture_text("xm-list-3.0.txt")) == [
        Domain("Domain-0", 0, 1993, 2, "r-----"),
        Domain("vm-virt01", 1, 128, 1, "-b----"),
        Domain("vm-virt02", 2, 128, 1, "-b----"),
    ]


def test_parse_list_table_refuses_unknown_lines(fixture_text):
    text = fixture_text("xl-list-4.17.txt") + "libxl: warning: something odd\n"
    with pytest.raises(ToolstackError, match="unexpected line"):
        parse_list_table(text)


def test_parse_list_table_refuses_a_bad_state_column():
    with pytest.raises(ToolstackError):
        parse_list_table("web01  3  128  1  -x----  1.0\n")


def test_parse_list_json(fixture_text):
    domains = parse_list_json(fixture_text("xl-list-l-4.17.json"))
    assert domains == [
        Domain("web01", 3, 128, 1, "", maxmem_mb=256),
        Domain("lab1-ana.silva", 7, 256, 2, "", maxmem_mb=256),
    ]


@pytest.mark.parametrize("text", ["(domain (domid 0) (name Domain-0))", "{not json", '{"domid": 1}', "[{}]"])
def test_parse_list_json_refuses_other_output(text):
    with pytest.raises(ToolstackError):
        parse_list_json(text)


def test_parse_list_json_refuses_old_sxp(fixture_text):
    with pytest.raises(ToolstackError, match="JSON"):
        parse_list_json(fixture_text("xl-list-l-4.1-sxp.txt"))


def test_parse_xl_info(fixture_text):
    assert parse_info(fixture_text("xl-info-4.17.txt")) == HostInfo(
        total_memory_mb=2047, free_memory_mb=878, xen_version="4.17.7", nr_cpus=2
    )


def test_parse_xm_info(fixture_text):
    assert parse_info(fixture_text("xm-info-3.0.txt")) == HostInfo(
        total_memory_mb=2046, free_memory_mb=1710, xen_version="3.0.3-1", nr_cpus=2
    )


def test_parse_info_refuses_output_without_memory(fixture_text):
    text = "\n".join(
        line for line in fixture_text("xl-info-4.17.txt").splitlines() if not line.startswith("free_memory")
    )
    with pytest.raises(ToolstackError, match="free_memory"):
        parse_info(text)


# --- real captures from the testbed (tests/dom0/fixtures/testbed) ------------------------
def _captures(pattern: str) -> list[Path]:
    return sorted(TESTBED.glob(pattern)) if TESTBED.is_dir() else []


def _need(paths: list[Path], what: str) -> None:
    # tests/testbed/capture.py writes them; they are committed, so none missing is a failure.
    assert paths, f"no testbed capture of {what} in {TESTBED}: run tests/testbed/capture.py"


def test_testbed_xl_list_captures_parse():
    paths = [
        p for p in _captures("xl-list*.txt") if not p.name.startswith(("xl-list-l.", "xl-list-l-", "xl-list-long"))
    ]
    _need(paths, "`xl list`")
    for path in paths:
        text = path.read_text()
        domains = parse_list_table(text)
        rows = [line for line in text.splitlines() if line.strip() and not line.startswith("Name")]
        assert len(domains) == len(rows), path.name
        assert domains[0].name == "Domain-0" and domains[0].domid == 0, path.name
        assert all(len(d.state) == 6 for d in domains), path.name


def test_testbed_xl_list_long_captures_parse():
    paths = _captures("xl-list-l*.json")
    _need(paths, "`xl list -l`")
    for path in paths:
        raw = json.loads(path.read_text())
        domains = parse_list_json(path.read_text())
        assert [d.domid for d in domains] == [item["domid"] for item in raw], path.name
        assert all(d.name and d.memory_mb > 0 for d in domains), path.name


def test_testbed_xl_info_captures_parse():
    paths = _captures("xl-info*.txt")
    _need(paths, "`xl info`")
    for path in paths:
        info = parse_info(path.read_text())
        assert info.xen_version.startswith("4.17"), path.name
        assert 0 < info.free_memory_mb <= info.total_memory_mb, path.name
        assert info.nr_cpus >= 1, path.name


# --- list_domains: table + JSON -------------------------------------------------------------
def test_xl_list_domains_merges_maxmem_from_json(scripted_runner, fixture_text):
    scripted_runner.expect(["xl", "list"], stdout=fixture_text("xl-list-4.17.txt"))
    scripted_runner.expect(["xl", "list", "-l"], stdout=fixture_text("xl-list-l-4.17.json"))
    domains = {d.name: d for d in Toolstack(scripted_runner).list_domains()}
    assert domains["web01"] == Domain("web01", 3, 128, 1, "-b----", maxmem_mb=256)
    # state and current memory come from the table, not from the JSON
    assert domains["lab1-ana.silva"] == Domain("lab1-ana.silva", 7, 256, 2, "r-----", maxmem_mb=256)
    assert domains["Domain-0"] == Domain("Domain-0", 0, 1024, 2, "r-----")
    assert domains["db02"].maxmem_mb is None


def test_xl_list_domains_ignores_json_of_a_reused_domid(scripted_runner, fixture_text):
    """Between the two calls a domain died and another got its domid: no maxmem from the wrong one."""
    data = json.loads(fixture_text("xl-list-l-4.17.json"))
    data[0]["config"]["c_info"]["name"] = "someone-else"
    scripted_runner.expect(["xl", "list"], stdout=fixture_text("xl-list-4.17.txt"))
    scripted_runner.expect(["xl", "list", "-l"], stdout=json.dumps(data))
    domains = {d.name: d for d in Toolstack(scripted_runner).list_domains()}
    assert domains["web01"].maxmem_mb is None


@pytest.mark.parametrize(
    "long_output, rc",
    [("xl-list-l-4.1-sxp.txt", 0), (None, 1)],
    ids=["old-xl-prints-sxp", "list-l-fails"],
)
def test_xl_list_domains_falls_back_to_the_table(scripted_runner, fixture_text, long_output, rc):
    scripted_runner.expect(["xl", "list"], stdout=fixture_text("xl-list-4.17.txt"))
    scripted_runner.expect(
        ["xl", "list", "-l"], stdout=fixture_text(long_output) if long_output else "", stderr="oops", rc=rc
    )
    domains = Toolstack(scripted_runner).list_domains()
    assert domains == parse_list_table(fixture_text("xl-list-4.17.txt"))
    assert all(d.maxmem_mb is None for d in domains)


def test_xm_list_domains_uses_the_table_only(scripted_runner, fixture_text):
    scripted_runner.expect(["xm", "list"], stdout=fixture_text("xm-list-3.0.txt"))
    domains = Toolstack(scripted_runner, "xm").list_domains()
    assert [(d.name, d.domid) for d in domains] == [("Domain-0", 0), ("vm-virt01", 1), ("vm-virt02", 2)]


def test_info_runs_info(scripted_runner, fixture_text):
    scripted_runner.expect(["xl", "info"], stdout=fixture_text("xl-info-4.17.txt"))
    assert Toolstack(scripted_runner).info().total_memory_mb == 2047


def test_xm_info_runs_xm_info(scripted_runner, fixture_text):
    scripted_runner.expect(["xm", "info"], stdout=fixture_text("xm-info-3.0.txt"))
    assert Toolstack(scripted_runner, "xm").info().xen_version == "3.0.3-1"


# --- verbs: exact argv ----------------------------------------------------------------------
VERBS = [
    ("create", ("/etc/xen/web01.cfg",), {}, ["create", "/etc/xen/web01.cfg"]),
    ("shutdown", ("web01",), {}, ["shutdown", "web01"]),
    ("shutdown", ("web01",), {"wait": True, "timeout": 42}, ["shutdown", "-w", "web01"]),
    ("reboot", ("web01",), {}, ["reboot", "web01"]),
    ("destroy", ("web01",), {}, ["destroy", "web01"]),
    ("pause", ("web01",), {}, ["pause", "web01"]),
    ("unpause", ("web01",), {}, ["unpause", "web01"]),
    ("save", ("web01", "/var/lib/xen/save/web01"), {}, ["save", "web01", "/var/lib/xen/save/web01"]),
    ("restore", ("/var/lib/xen/save/web01",), {}, ["restore", "/var/lib/xen/save/web01"]),
]


@pytest.mark.parametrize("dialect", ["xl", "xm"])
@pytest.mark.parametrize("verb, args, kwargs, tail", VERBS, ids=[f"{v[0]}{'-w' if v[2] else ''}" for v in VERBS])
def test_verb_argv(scripted_runner, dialect, verb, args, kwargs, tail):
    scripted_runner.expect([dialect, *tail])
    assert getattr(Toolstack(scripted_runner, dialect), verb)(*args, **kwargs) is None


def test_shutdown_wait_passes_its_timeout_to_the_runner(scripted_runner):
    scripted_runner.expect(["xl", "shutdown", "-w", "web01"])
    Toolstack(scripted_runner).shutdown("web01", wait=True, timeout=42)
    assert scripted_runner.calls[0]["timeout"] == 42


def test_xl_mem_set_gives_mebibytes_with_a_unit(scripted_runner):
    # A bare number means KiB to xl mem-set.
    scripted_runner.expect(["xl", "mem-set", "web01", "128m"])
    Toolstack(scripted_runner).mem_set("web01", 128)


def test_xm_mem_set_gives_plain_mebibytes(scripted_runner):
    scripted_runner.expect(["xm", "mem-set", "web01", "256"])
    Toolstack(scripted_runner, "xm").mem_set("web01", 256)


@pytest.mark.parametrize("dialect", ["xl", "xm"])
def test_console_command(forbidden_runner, dialect):
    assert Toolstack(forbidden_runner, dialect).console_command("web01") == [dialect, "console", "web01"]


def test_unknown_dialect_is_refused(forbidden_runner):
    with pytest.raises(ValueError):
        Toolstack(forbidden_runner, "virsh")


# --- errors ---------------------------------------------------------------------------------
ERRORS = [
    ("xl", "destroy", "web9 is an invalid domain identifier (rc=-6)\n", DomainNotFound),
    (
        "xl",
        "pause",
        "libxl: error: libxl_domain.c:1302:libxl_domain_pause: Domain web9 not found\n",
        DomainNotFound,
    ),
    ("xm", "destroy", "Error: Domain 'web9' does not exist.\n", DomainNotFound),
    (
        "xl",
        "create",
        'libxl: error: libxl_domain.c:227:libxl__domain_rename: Domain with name "web01" already exists.\n'
        "libxl: error: libxl_create.c:1325:initiate_domain_create: cannot make domain: -6\n",
        DomainExists,
    ),
    ("xm", "create", "Error: Domain 'web01' already exists with ID '3'\n", DomainExists),
    (
        "xl",
        "create",
        "Parsing config from /etc/xen/web01.cfg\nfailed to free memory for the domain\n",
        NotEnoughMemory,
    ),
    (
        "xl",
        "destroy",
        "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 7:Non-existant domain\n",
        DomainNotFound,
    ),
    ("xm", "create", "Error: (12, 'Cannot allocate memory')\n", NotEnoughMemory),
]


@pytest.mark.parametrize("dialect, verb, stderr, cls", ERRORS)
def test_errors_are_mapped(scripted_runner, dialect, verb, stderr, cls):
    args = ["/etc/xen/web01.cfg"] if verb == "create" else ["web01"]
    scripted_runner.expect([dialect, verb, *args], stderr=stderr, rc=1)
    with pytest.raises(cls) as info:
        getattr(Toolstack(scripted_runner, dialect), verb)(*args)
    e = info.value
    assert e.argv == [dialect, verb, *args]
    assert e.rc == 1
    assert e.stderr == stderr
    assert "exit code: 1" in e.detail() and dialect in e.detail()


def test_other_failures_are_plain_toolstack_errors(scripted_runner):
    stderr = "libxl: error: libxl_device.c:1271:device_backend_callback: unable to add device\n"
    scripted_runner.expect(["xl", "create", "/etc/xen/web01.cfg"], stderr=stderr, rc=3)
    with pytest.raises(ToolstackError) as info:
        Toolstack(scripted_runner).create("/etc/xen/web01.cfg")
    assert type(info.value) is ToolstackError
    assert info.value.rc == 3 and "unable to add device" in str(info.value)


def test_the_most_telling_line_is_the_message():
    e = classify_error(
        ["xl", "create", "/etc/xen/web01.cfg"],
        1,
        "Parsing config from /etc/xen/web01.cfg\nfailed to free memory for the domain\nsome trailing noise\n",
    )
    assert isinstance(e, NotEnoughMemory)
    assert str(e) == "xl create: failed to free memory for the domain"


def test_timeouts_are_not_disguised():
    class SlowRunner:
        busy_seconds = 0.0

        def run(self, argv, **kwargs):
            raise CommandTimeout("xl did not finish within 5 s", argv=list(argv))

    with pytest.raises(CommandTimeout):
        Toolstack(SlowRunner()).shutdown("web01", wait=True, timeout=5)


# --- real Xen 4.17 output, captured on the QEMU testbed (see fixtures/README.md) --------------------------
def test_real_xl_info(fixture_text):
    assert parse_info(fixture_text("xl-info-4.17-real.txt")) == HostInfo(
        total_memory_mb=2559, free_memory_mb=1506, xen_version="4.17.7", nr_cpus=2
    )


def test_real_xl_list_and_list_long_of_a_fresh_dom0(scripted_runner, fixture_text):
    assert parse_list_table(fixture_text("xl-list-4.17-dom0-real.txt")) == [Domain("Domain-0", 0, 1024, 2, "r-----")]
    # xl 4.17 lists Domain-0 in its JSON too, without max_vcpus
    assert parse_list_json(fixture_text("xl-list-l-4.17-dom0-real.json")) == [
        Domain("Domain-0", 0, 1023, 0, "", maxmem_mb=1024)
    ]
    scripted_runner.expect(["xl", "list"], stdout=fixture_text("xl-list-4.17-dom0-real.txt"))
    scripted_runner.expect(["xl", "list", "-l"], stdout=fixture_text("xl-list-l-4.17-dom0-real.json"))
    assert Toolstack(scripted_runner).list_domains() == [Domain("Domain-0", 0, 1024, 2, "r-----", maxmem_mb=1024)]


REAL_ERRORS = {
    "invalid-domain": DomainNotFound,
    "out-of-memory": NotEnoughMemory,
    "no-config": ToolstackError,
    # libxl's cleanup says "Non-existant domain": for a create that is no DomainNotFound
    "hotplug-timeout": ToolstackError,
    "domain-exists": DomainExists,
    # a guest that cannot take the request yet (still booting, no PV control)
    "shutdown-not-acknowledged": InvalidState,
    "mem-set-above-maxmem": ToolstackError,
}


@pytest.mark.parametrize("case, cls", REAL_ERRORS.items(), ids=REAL_ERRORS.keys())
def test_real_xl_errors_are_mapped(scripted_runner, fixture_text, case, cls):
    captured = json.loads(fixture_text("xl-errors-4.17-real.json"))[case]
    argv = captured["argv"]
    scripted_runner.expect(argv, stderr=captured["stderr"], rc=captured["rc"])
    if case == "hotplug-timeout":  # create tries again after libxl's hotplug timeout
        for _ in range(HOTPLUG_RETRIES):
            scripted_runner.expect(argv, stderr=captured["stderr"], rc=captured["rc"])
    ts = Toolstack(scripted_runner)
    call = {
        "shutdown": lambda: ts.shutdown(argv[-1], wait=True),
        "mem-set": lambda: ts.mem_set(argv[2], int(argv[3].rstrip("m"))),
    }.get(argv[1], lambda: getattr(ts, argv[1])(argv[2]))
    with pytest.raises(ToolstackError) as info:
        call()
    assert type(info.value) is cls
    assert (info.value.argv, info.value.rc, info.value.stderr) == (argv, captured["rc"], captured["stderr"])


def test_real_out_of_memory_message_names_the_cause(fixture_text):
    captured = json.loads(fixture_text("xl-errors-4.17-real.json"))["out-of-memory"]
    e = classify_error(captured["argv"], captured["rc"], captured["stderr"])
    assert str(e) == (
        "xl create: xc: error: panic: xg_dom_boot.c:119: xc_dom_boot_mem_init: "
        "can't allocate low memory for domain: Out of memory"
    )


def test_real_hotplug_failure_message_names_the_cause(fixture_text):
    captured = json.loads(fixture_text("xl-errors-4.17-real.json"))["hotplug-timeout"]
    e = classify_error(captured["argv"], captured["rc"], captured["stderr"])
    assert "scripts/block add because of timeout" in str(e) and "exit 3" in str(e)


@pytest.mark.parametrize(
    "case, message",
    [
        ("domain-exists", 'Domain with name "web01" already exists.'),
        ("shutdown-not-acknowledged", "guest didn't acknowledge control request: -9"),
        ("mem-set-above-maxmem", "memory_dynamic_max must be less than or equal to memory_static_max"),
    ],
)
def test_real_error_messages_skip_progress_lines(fixture_text, case, message):
    captured = json.loads(fixture_text("xl-errors-4.17-real.json"))[case]
    e = classify_error(captured["argv"], captured["rc"], captured["stderr"])
    assert message in str(e)
    assert "Parsing config" not in str(e) and "Shutting down domain" not in str(e)


def test_real_running_and_paused_domu(scripted_runner, fixture_text):
    scripted_runner.expect(["xl", "list"], stdout=fixture_text("xl-list-4.17-domu-real.txt"))
    scripted_runner.expect(["xl", "list", "-l"], stdout=fixture_text("xl-list-l-4.17-domu-real.json"))
    assert Toolstack(scripted_runner).list_domains() == [
        Domain("Domain-0", 0, 1024, 2, "r-----", maxmem_mb=1024),
        Domain("web01", 1, 128, 1, "r-----", maxmem_mb=192),
    ]
    paused = parse_list_table(fixture_text("xl-list-4.17-paused-real.txt"))
    assert paused[1] == Domain("web01", 1, 128, 1, "--p---") and paused[1].letter == "p"


# --- CPU time and xentop -------------------------------------------------------------
def test_the_list_table_keeps_each_domains_cpu_time(fixture_text):
    """Time(s): CPU seconds since the domain was built; the usage charts difference it between two ticks."""
    times = {d.name: d.cpu_seconds for d in parse_list_table(fixture_text("xl-list-4.17.txt"))}
    assert times == {"Domain-0": 163.2, "web01": 4.9, "db02": 2.1, "lab1-ana.silva": 11.0, "crashed01": 0.8}
    # xm prints the same column.
    assert [d.cpu_seconds for d in parse_list_table(fixture_text("xm-list-3.0.txt"))][0] is not None
    # A counter is not what makes two rows the same domain.
    assert Domain("web01", 3, 128, 1, "-b----", cpu_seconds=4.9) == Domain("web01", 3, 128, 1, "-b----")


def test_list_domains_keeps_the_cpu_time_when_merging_the_json(scripted_runner, fixture_text):
    scripted_runner.expect(["xl", "list"], stdout=fixture_text("xl-list-4.17.txt"))
    scripted_runner.expect(["xl", "list", "-l"], stdout=fixture_text("xl-list-l-4.17.json"))
    domains = {d.name: d for d in Toolstack(scripted_runner).list_domains()}
    assert domains["web01"].maxmem_mb == 256 and domains["web01"].cpu_seconds == 4.9


def test_parse_xentop_reads_the_last_block(fixture_text):
    """xentop -b -i 2 prints two blocks; the first has CPU(%) 0.0 everywhere (nothing to compare with yet)."""
    text = fixture_text("xentop-4.17.txt")
    first = text.split("NAME")[1]
    assert text.count("NAME") == 2 and "    611    0.0     262144" in first
    rows = {r.name: r for r in parse_xentop(text)}
    assert list(rows) == ["Domain-0", "web01", "db02", "lab1-ana.silva"]
    spin = rows["lab1-ana.silva"]
    assert (spin.cpu_seconds, spin.cpu_percent, spin.vcpus, spin.state) == (612, 97.4, 2, "-----r")
    assert (spin.mem_kb, spin.maxmem_kb) == (262144, 262144)
    assert (spin.nets, spin.net_tx_kb, spin.net_rx_kb) == (1, 5, 61)
    assert (spin.vbds, spin.vbd_rd, spin.vbd_wr, spin.vbd_rsect, spin.vbd_wsect) == (2, 996, 1424, 58870, 91160)
    assert (spin.net_rx_bytes, spin.disk_write_bytes) == (61 * 1024, 91160 * 512)
    # dom0 has no memory ceiling: MAXMEM(k) "no limit", MAXMEM(%) "n/a".
    assert rows["Domain-0"].maxmem_kb is None and rows["Domain-0"].mem_kb == 1024 * 1024
    assert rows["db02"].state == "----p-" and rows["web01"].state == "--b---"


def test_parse_xentop_leaves_out_a_domain_whose_counters_it_could_not_read(fixture_text):
    """Seen on the testbed while a guest's disks were being connected: xentop printed "-" for its disk
    counters. That guest has no reading this time (its next one starts afresh); the others are read."""
    rows = parse_xentop(fixture_text("xentop-4.17-unread-disks.txt"))
    assert [r.name for r in rows] == ["Domain-0"]


def test_xentop_without_f_cuts_names_to_ten_characters(fixture_text):
    """Why the panel passes -f: a lab's domain names are longer than xentop's 10-character column."""
    names = [r.name for r in parse_xentop(fixture_text("xentop-4.17-cut-names.txt"))]
    assert names == ["Domain-0", "web01", "db02", "lab1-ana.s"]
    assert "-f" in XENTOP_ARGV


@pytest.mark.parametrize(
    "text",
    [
        "",
        "xentop: Failed to initialize xenstat library\n",
        "      NAME  STATE   CPU(sec)\n  Domain-0 -----r  12\n",
    ],
)
def test_parse_xentop_refuses_what_is_not_its_output(text):
    with pytest.raises(ToolstackError):
        parse_xentop(text)


def test_domain_counters_runs_xentop_in_batch_with_full_names(scripted_runner, fixture_text):
    scripted_runner.expect(XENTOP_ARGV, stdout=fixture_text("xentop-4.17.txt"))
    rows = Toolstack(scripted_runner).domain_counters()
    assert XENTOP_ARGV == ["xentop", "-b", "-i", "2", "-d", "1", "-f"]
    assert [r.name for r in rows][-1] == "lab1-ana.silva"


def test_domain_counters_failure_is_a_toolstack_error(scripted_runner):
    scripted_runner.expect(XENTOP_ARGV, stderr="Failed to initialize xenstat library\n", rc=1)
    with pytest.raises(ToolstackError, match="xentop failed"):
        Toolstack(scripted_runner).domain_counters()
