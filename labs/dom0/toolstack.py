"""The Xen toolstack: `xl` (Xen >= 4.2) or the classic `xm` of the 2007 recipe.

`Toolstack` turns each lifecycle verb into one argv list, runs it through the
host's runner and maps the toolstack's error messages to errors.py classes,
so a job can tell "no such domain" from "out of memory" without reading
stderr itself. Every name and path is validated by names.py before any argv
is built.

The parsers are module-level pure functions so tests can feed them captured
output: `parse_list_table` (the `Name ID Mem VCPUs State Time(s)` table of
both `xl list` and `xm list`), `parse_list_json` (`xl list -l`),
`parse_info` (`xl info` / `xm info`) and `parse_xentop` (`xentop -b`: the
network and disk counters).
"""

from __future__ import annotations

import json
import re
from typing import Literal

from . import names
from .base import STATE_LETTERS, Domain, DomainCounters, HostInfo
from .errors import (
    CommandFailed,
    DomainExists,
    DomainNotFound,
    InvalidState,
    NotEnoughMemory,
    ToolstackError,
)
from .runner import Result, Runner

Dialect = Literal["xl", "xm"]

# Short verbs (pause, destroy, mem-set...) return in well under a second on
# a real host. `xl create` runs the hotplug scripts: 10-13 s on an idle
# emulated testbed, over 120 s on a loaded one, where libxl's own hotplug
# timeout fired first. Ours must stay above libxl's so that xl reports (and
# cleans up after) its own failure instead of being killed half-way.
VERB_TIMEOUT = 60.0
CREATE_TIMEOUT = 300.0
SAVE_TIMEOUT = 600.0
# When libxl's timeout does fire ("killing execution of /etc/xen/scripts/block
# add because of timeout"), libxl has already destroyed the half-made domain.
# The testbed with its CPUs oversubscribed hit it in 2 of 9 creates and
# restores in one session, and once twice in a row (a 2-guest batch while the
# first guest booted); such a create is tried twice more before it fails.
_HOTPLUG_TIMEOUT = re.compile(r"killing execution of \S+ \S+ because of timeout")
HOTPLUG_RETRIES = 2

# (pattern, class), first match wins. xl 4.17 prints e.g. (captured on the testbed)
#   "web1 is an invalid domain identifier (rc=-6)"
#   "xc_dom_boot_mem_init: can't allocate low memory for domain: Out of memory"
#   "libxl: error: ...: Domain 3:Non-existant domain"  (sic)
#   "libxl: error: ...: Domain 2:Domain with name "web01" already exists."
#   "libxl: error: ...: guest didn't acknowledge control request: -9"
# (a guest without PV control yet, e.g. still booting, ignores shutdown and
# reboot requests), and, not captured yet, xl's "failed to free memory for the
# domain"; xm says "Error: Domain 'web1' does not exist." / "Error: Domain
# 'web1' already exists with ID '3'".
_ERRORS: list[tuple[re.Pattern[str], type[ToolstackError]]] = [
    (re.compile(r"already exists", re.I), DomainExists),
    (
        re.compile(
            r"failed to free memory|out of memory|not enough (free )?memory|cannot allocate memory"
            r"|insufficient memory",
            re.I,
        ),
        NotEnoughMemory,
    ),
    (
        re.compile(
            r"invalid domain identifier|domain \S+ not found|domain '[^']*' does not exist"
            r"|non-?exist[ae]nt domain|no such domain",
            re.I,
        ),
        DomainNotFound,
    ),
    (re.compile(r"didn't acknowledge control request", re.I), InvalidState),
]

# A row of the list table, read from the right because only the name is
# free text: Name, ID, Mem, VCPUs, State (six columns r b p s c d), Time(s).
_LIST_ROW = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<domid>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
    r"(?P<state>[" + STATE_LETTERS + r"-]{6})\s+(?P<time>\d+(?:\.\d+)?)\s*$"
)
# `xentop -b` (batch: no curses, no summary lines) prints a header line, then one row per domain, once per
# iteration; -f keeps long names whole (without it they are cut to 10 characters). Its first iteration has
# nothing to compare with, so its CPU(%) column is 0.0: the last block is the one to read. The state is six
# letters in xentop's own order (d s b c p r: "--b---" is blocked, "-----r" running), and MAXMEM(k) of a
# domain without a ceiling (dom0, usually) reads "no limit", its MAXMEM(%) "n/a". Row layout from
# tools/xentop/xentop.c (Xen 4.17): NAME is right-aligned, every other column a number.
XENTOP_ARGV = ["xentop", "-b", "-i", "2", "-d", "1", "-f"]
_NUM = r"\d+(?:\.\d+)?"
_XENTOP_ROW = re.compile(
    r"^\s*(?P<name>\S.*?)\s+(?P<state>[-dsbcpr]{6})\s+(?P<cpu>\d+)\s+(?P<cpu_pct>" + _NUM + r")"
    r"\s+(?P<mem>\d+)\s+" + _NUM + r"\s+(?P<maxmem>\d+|no limit)\s+(?:" + _NUM + r"|n/a)"
    r"\s+(?P<vcpus>\d+)\s+(?P<nets>\d+)\s+(?P<nettx>\d+|-)\s+(?P<netrx>\d+|-)"
    r"\s+(?P<vbds>\d+)\s+(?P<oo>\d+|-)\s+(?P<rd>\d+|-)\s+(?P<wr>\d+|-)\s+(?P<rsect>\d+|-)\s+(?P<wsect>\d+|-)"
    r"\s+\d+\s*$"
)
# xentop prints "-" for counters it could not read: seen on Xen 4.17 for a domain whose disks were still
# being connected (`e2ec-alice ----p- ... 2 - - - - - 0`).
_COUNTERS = ("nettx", "netrx", "oo", "rd", "wr", "rsect", "wsect")
# xm also lists domains xend manages but that are not running: no ID and an
# empty state. They are configs, not domains, so they are left out.
_XM_INACTIVE_ROW = re.compile(r"^\S.*?\s+\d+\s+\d+\s+-{6}\s+\d+(?:\.\d+)?\s*$")


# Verbs that make a domain: "not found" in their stderr is about libxl's
# cleanup of the half-built domain ("Domain 3:Non-existant domain"), never
# about the caller's input, so it must not become DomainNotFound.
_CREATING_VERBS = ("create", "restore")
# xl's progress lines on stderr, not errors.
_BANNER = re.compile(r"Parsing config from |Shutting down domain \d+$|Rebooting domain \d+$|Waiting for ")


def classify_error(argv: list[str], rc: int | None, stderr: str) -> ToolstackError:
    """The errors.py class that fits the toolstack's stderr, carrying argv, rc and stderr.

    The message is the first line that shows the cause: xl's later lines are
    mostly libxl cleaning up after it ("Unable to destroy guest").
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not _BANNER.match(line.strip())]
    verb = " ".join(argv[:2]) if len(argv) >= 2 else (argv[0] if argv else "toolstack")
    creating = len(argv) >= 2 and argv[1] in _CREATING_VERBS
    for pattern, cls in _ERRORS:
        if cls is DomainNotFound and creating:
            continue
        hit = next((line for line in lines if pattern.search(line)), None)
        if hit is not None:
            return cls(f"{verb}: {hit}", argv=argv, rc=rc, stderr=stderr)
    first = lines[0] if lines else "no error output"
    return ToolstackError(f"{verb} failed (exit {rc}): {first}", argv=argv, rc=rc, stderr=stderr)


# xl's monitor (the `xl create` left in the background) logs each domain's life here; `xl create`
# rotates the file, so it covers the domain since its last create.
XL_LOG_DIR = "/var/log/xen"
XL_LOG_TAIL_BYTES = 16384
_RESTARTING = "Done. Rebooting now"
_WAITING = re.compile(r"^Waiting for domain \S+ \(domid \d+\) to die")
_LOG_PREFIX = re.compile(r"^libxl: error: \S+?:\d+:\w+: (?:Domain \d+:)?")
_ADD_DEVICES = re.compile(r"unable to add \w+ devices")
REASON_CHARS = 240


def parse_restart_failure(log: str) -> str:
    """Why xl's restart of a domain that rebooted itself failed, from the domain's xl log; "" if it did not.

    After "Done. Rebooting now" xl builds the domain again; on success it
    logs "Waiting for domain ... to die" for the new one. An error instead,
    with no new wait after it, is a restart that failed: the domain is gone
    and the monitor has exited (seen on the testbed: libxl's hotplug timeout,
    "unable to add disk devices"). Nothing is inferred before the error is
    logged, so a restart still in progress is not taken for a failed one.
    """
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    restarts = [i for i, line in enumerate(lines) if line.endswith(_RESTARTING)]
    if not restarts:
        return ""
    after = lines[restarts[-1] + 1 :]
    if any(_WAITING.match(line) for line in after):
        return ""
    errors = [line for line in after if "error" in line.lower() or "fatal" in line.lower()]
    if not errors:
        return ""
    # "unable to add disk devices" says most; libxl's other lines are its detail and cleanup.
    best = next((line for line in errors if _ADD_DEVICES.search(line)), errors[0])
    return _LOG_PREFIX.sub("", best)[:REASON_CHARS]


def parse_list_table(text: str) -> list[Domain]:
    """Rows of `xl list` / `xm list`, Domain-0 included; a dying `(null)` domain is kept as is."""
    domains: list[Domain] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        if line.split()[0] == "Name" and "State" in line:
            continue  # the header
        m = _LIST_ROW.match(line)
        if m is None:
            if _XM_INACTIVE_ROW.match(line):
                continue
            raise ToolstackError(f"unexpected line in the domain list: {line!r}")
        domains.append(
            Domain(
                name=m["name"],
                domid=int(m["domid"]),
                memory_mb=int(m["mem"]),
                vcpus=int(m["vcpus"]),
                state=m["state"],
                cpu_seconds=float(m["time"]),
            )
        )
    return domains


def parse_xentop(text: str) -> list[DomainCounters]:
    """The domains of the last block of `xentop -b` output (Domain-0 included).

    Raises ToolstackError on output without a header or with a row that is
    not xentop's (so a changed layout is noticed, not misread).
    """
    blocks: list[list[DomainCounters]] = []
    for raw in text.splitlines():
        words = raw.split()
        if not words:
            continue
        if words[0] == "NAME" and "STATE" in words:
            blocks.append([])
            continue
        m = _XENTOP_ROW.match(raw)
        if m is None or not blocks:
            raise ToolstackError(f"unexpected line in xentop output: {raw!r}")
        if "-" in m.group(*_COUNTERS):
            continue  # no reading for it this time: its next one starts afresh, as for a new domain
        blocks[-1].append(_xentop_row(m))
    if not blocks:
        raise ToolstackError("xentop printed no header: is this xentop -b output?")
    return blocks[-1]


def _xentop_row(m: re.Match[str]) -> DomainCounters:
    return DomainCounters(
        name=m["name"],
        state=m["state"],
        cpu_seconds=int(m["cpu"]),
        cpu_percent=float(m["cpu_pct"]),
        mem_kb=int(m["mem"]),
        maxmem_kb=None if m["maxmem"] == "no limit" else int(m["maxmem"]),
        vcpus=int(m["vcpus"]),
        nets=int(m["nets"]),
        net_tx_kb=int(m["nettx"]),
        net_rx_kb=int(m["netrx"]),
        vbds=int(m["vbds"]),
        vbd_oo=int(m["oo"]),
        vbd_rd=int(m["rd"]),
        vbd_wr=int(m["wr"]),
        vbd_rsect=int(m["rsect"]),
        vbd_wsect=int(m["wsect"]),
    )


def parse_list_json(text: str) -> list[Domain]:
    """Domains of `xl list -l` (JSON: [{"domid": N, "config": libxl_domain_config}, ...]).

    The JSON carries each domain's configuration but not its run state, so
    `state` is "" here; `memory_mb` is the balloon target and `maxmem_mb` the
    static maximum. Xen 4.17 lists Domain-0 too, without `max_vcpus`: a vcpus
    count the JSON does not give is 0 (unknown). Raises ToolstackError when
    the text is not that JSON (e.g. the SXP that xl 4.0/4.1 printed).
    """
    try:
        data = json.loads(text) if text.strip() else []
    except ValueError as e:
        raise ToolstackError(f"xl list -l did not print JSON: {e}") from None
    if not isinstance(data, list):
        raise ToolstackError("xl list -l printed JSON that is not a list")
    domains: list[Domain] = []
    for item in data:
        try:
            config = item["config"]
            c_info, b_info = config["c_info"], config["b_info"]
            max_kb = int(b_info.get("max_memkb", 0) or 0)
            target_kb = int(b_info.get("target_memkb", 0) or max_kb)
            vcpus = int(b_info.get("max_vcpus", 0) or 0) or len(b_info.get("avail_vcpus", []) or [])
            domains.append(
                Domain(
                    name=str(c_info["name"]),
                    domid=int(item["domid"]),
                    memory_mb=target_kb // 1024,
                    vcpus=vcpus,
                    state="",
                    maxmem_mb=max_kb // 1024 if max_kb else None,
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ToolstackError(f"unexpected entry in xl list -l: {e!r}") from None
    return domains


def parse_info(text: str) -> HostInfo:
    """HostInfo from `xl info` / `xm info` ("key : value" lines)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    try:
        return HostInfo(
            total_memory_mb=int(fields["total_memory"]),
            free_memory_mb=int(fields["free_memory"]),
            xen_version=f"{int(fields['xen_major'])}.{int(fields['xen_minor'])}{fields.get('xen_extra', '')}",
            nr_cpus=int(fields.get("nr_cpus", "0") or 0),
        )
    except (KeyError, ValueError) as e:
        raise ToolstackError(f"unexpected `info` output: missing or bad field {e}") from None


class Toolstack:
    """Lifecycle verbs of one host's toolstack, run through `runner`."""

    def __init__(self, runner: Runner, dialect: Dialect = "xl") -> None:
        if dialect not in ("xl", "xm"):
            raise ValueError(f"unknown toolstack {dialect!r}: use 'xl' or 'xm'")
        self.runner = runner
        self.dialect: Dialect = dialect

    # --- plumbing -------------------------------------------------------------
    def _run(self, *args: str, timeout: float = VERB_TIMEOUT) -> Result:
        argv = [self.dialect, *args]
        try:
            return self.runner.run(argv, timeout=timeout)
        except CommandFailed as e:
            raise classify_error(e.argv or argv, e.rc, e.stderr) from None

    # --- host -----------------------------------------------------------------
    def info(self) -> HostInfo:
        return parse_info(self._run("info").stdout)

    def list_domains(self) -> list[Domain]:
        """Every domain the hypervisor knows, Domain-0 (domid 0) included.

        The table gives the live state and memory; with xl, `xl list -l`
        adds each domain's maxmem. When that JSON is unavailable (xm, or an
        xl that prints SXP) the table alone is the answer.
        """
        domains = parse_list_table(self._run("list").stdout)
        if self.dialect != "xl":
            return domains
        try:
            details = {d.domid: d for d in parse_list_json(self._run("list", "-l").stdout)}
        except ToolstackError:
            return domains
        merged = []
        for d in domains:
            extra = details.get(d.domid)
            if extra is not None and extra.name == d.name:
                d = Domain(
                    d.name,
                    d.domid,
                    d.memory_mb,
                    d.vcpus,
                    d.state,
                    maxmem_mb=extra.maxmem_mb,
                    cpu_seconds=d.cpu_seconds,
                )
            merged.append(d)
        return merged

    def domain_counters(self) -> list[DomainCounters]:
        """`xentop -b -i 2 -d 1 -f`: every domain's network and disk totals (it takes a second: -d 1)."""
        try:
            out = self.runner.run(XENTOP_ARGV, timeout=VERB_TIMEOUT).stdout
        except CommandFailed as e:
            raise ToolstackError(
                f"xentop failed (exit {e.rc}): {e.stderr.strip()[:200]}", argv=e.argv, rc=e.rc, stderr=e.stderr
            ) from None
        return parse_xentop(out)

    # --- verbs ----------------------------------------------------------------
    def create(self, config_path: str) -> None:
        self._build("create", names.abs_path(config_path), timeout=CREATE_TIMEOUT)

    def _build(self, verb: str, path: str, timeout: float) -> None:
        """`create` or `restore`: both run the hotplug scripts, and libxl's timeout there is tried again."""
        for attempt in range(HOTPLUG_RETRIES + 1):
            try:
                self._run(verb, path, timeout=timeout)
                return
            except ToolstackError as e:
                if attempt == HOTPLUG_RETRIES or not _HOTPLUG_TIMEOUT.search(e.stderr):
                    raise

    def shutdown(self, name: str, wait: bool = False, timeout: float = 120) -> None:
        """Ask the guest to power off; with `wait`, return only once it has (`-w`)."""
        name = names.domain_name(name)
        if wait:
            self._run("shutdown", "-w", name, timeout=timeout)
        else:
            self._run("shutdown", name)

    def reboot(self, name: str) -> None:
        self._run("reboot", names.domain_name(name))

    def destroy(self, name: str) -> None:
        self._run("destroy", names.domain_name(name))

    def pause(self, name: str) -> None:
        self._run("pause", names.domain_name(name))

    def unpause(self, name: str) -> None:
        self._run("unpause", names.domain_name(name))

    def mem_set(self, name: str, memory_mb: int) -> None:
        name = names.domain_name(name)
        memory_mb = names.memory_mb(memory_mb)
        # xl takes a unit suffix (a bare number would be KiB in some versions);
        # xm takes plain MiB, as in the recipe's `xm mem-set vm1 256`.
        amount = f"{memory_mb}m" if self.dialect == "xl" else str(memory_mb)
        self._run("mem-set", name, amount)

    def save(self, name: str, path: str) -> None:
        self._run("save", names.domain_name(name), names.abs_path(path), timeout=SAVE_TIMEOUT)

    def restore(self, path: str) -> None:
        # libxl destroys a domain whose hotplug timed out; the image is still there to restore again.
        self._build("restore", names.abs_path(path), timeout=SAVE_TIMEOUT)

    def restart_failure(self, name: str) -> str:
        """Why xl could not restart `name` after it rebooted itself ("" if it did not fail; xm keeps no such log)."""
        name = names.domain_name(name)
        if self.dialect != "xl":
            return ""
        log = f"{XL_LOG_DIR}/xl-{name}.log"
        r = self.runner.run(["tail", "-c", str(XL_LOG_TAIL_BYTES), "--", log], check=False)
        return parse_restart_failure(r.stdout) if r.rc == 0 else ""

    def console_command(self, name: str) -> list[str]:
        """The argv that attaches to the guest's console (detach with Ctrl+])."""
        return [self.dialect, "console", names.domain_name(name)]
