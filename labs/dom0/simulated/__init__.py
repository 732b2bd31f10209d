"""A simulated dom0: a faithful state machine of one Xen + LVM host.

`SimulatedHost` implements every method of `Dom0Host` with the same
signatures, return values and error classes as the real `XenHost`, so the
panel, the RQ jobs and the tests run unchanged against it (the embedded demo
and the fast test suite do). Like Ganeti's fake hypervisor, but it keeps the
accounting a real host would enforce. One module per concern:

- state.py: the state shared by every process that opens the host (one JSON
  file changed under a lock, a history side file), time-dependent transitions,
  step delays;
- accounting.py: memory like Xen (free = total - dom0 - every present
  domain's memory), storage like LVM (4 MiB extents, sizes rounded up), the
  thin pool's chunks;
- faults.py: `_op`, the path every simulated command takes, and the faults
  tests arm against it;
- failures.py: the real tools' stderr, judged as the real modules judge it
  (`toolstack.classify_error`, lvm's and rootfs's "<what>: <line>" forms);
- storage.py: LVs, thin snapshots, the thin pool;
- filesystem.py: root filesystems: a volume is empty until `clone_template`,
  and a removed and recreated volume is empty again; per-guest files are
  rendered by the real `rootfs.guest_files`;
- configs.py: config files, rendered by the real `domconfig.render_xl`/`render_xm`;
- xl.py: toolstack states as `xl list` prints them, with time: `shutdown`
  leaves the domain in `---s--` for a while, `reboot` comes back with a new
  domid; a guest whose root volume holds no filesystem panics at boot;
- inspection.py: views of the state for tests;
- load.py: believable load: CPU time for `xl list`'s Time(s) and xentop's
  network and disk counters, from how long each domain has run; an idle
  guest stays near 0 % and the demo's runaway guest spins near 97 %;
- templates.py: `build_template` (the debootstrap tree, its files rendered by
  the real template module) and the golden LV's `create_thin_volume` and
  `rename_volume` (labs.dom0.template.TemplateHost); `templates()` lists the trees;
- console.py: `open_console(name)`, the serial console of a guest: a login
  banner, echo, and `hostname` / `ip addr` from the guest's files; it runs
  no command and starts no process.

Extras for tests and benchmarks (not part of `Dom0Host`):
`inject()` / `clear_faults()` / `faults()` arm failures in the shared state;
`volumes()` / `domains()` / `configs()` / `saved_images()` / `events()`
inspect it; `volume_serial(name)` tells a recreated volume from the old one;
`history` lists the argv each operation would have run; `busy_seconds`
counts the time spent in simulated commands; `crash(name)` and `reset()`;
`guest_writes(name, mb)` and `set_thin_pool_size(mb)` fill and size the thin pool;
`set_load(name, "idle" | "spin")` picks a guest's load and `backdate(name, s)` ages it past its boot.

Delays: `config.sim_delay` multiplies STEP_SECONDS (roughly what each step
costs on a real server, so 1.0 models one); `config.extra["delays"]`
overrides single steps in seconds, e.g. {"clone": 0.6, "create": 1.0}.
"""

from __future__ import annotations

from .accounting import EXTENT_BYTES
from .console import ConsoleMixin
from .faults import FAULT_KINDS
from .filesystem import FilesystemMixin
from .inspection import InspectionMixin
from .load import LoadMixin
from .state import STEP_ALIASES, STEP_SECONDS
from .storage import StorageMixin
from .templates import TemplatesMixin
from .xl import ToolstackMixin

__all__ = ["EXTENT_BYTES", "FAULT_KINDS", "STEP_ALIASES", "STEP_SECONDS", "SimulatedHost"]


class SimulatedHost(
    TemplatesMixin, StorageMixin, FilesystemMixin, ToolstackMixin, InspectionMixin, ConsoleMixin, LoadMixin
):
    """A fake dom0 whose state lives in a JSON file shared by all processes."""
