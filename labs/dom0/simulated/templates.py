"""Template work on the simulated host: the debootstrap tree and the golden LV, with nothing run.

`build_template` does what `TemplateBuilder.build` does to a real dom0, in
the shared state: the same checks (a bad value is refused before anything,
an existing tree is kept unless `replace`), the same files, rendered by the
real template module (the seed's touches: hostname, fstab, the hvc0 getty,
the `ls` alias and TMOUT in /etc/profile), the same result. The argv a real
host would run go to the history; the log gets the build's plan line by line.
`create_thin_volume` and `rename_volume` are LVM's `lvcreate -V -T` and
`lvrename`, with LVM's messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import names
from ..base import Volume
from ..errors import Dom0Error, InsufficientSpace, VolumeExists, VolumeNotFound
from ..template import (
    CONSOLE_LINKS,
    TemplateBuilder,
    TemplateResult,
    TemplateSpec,
    bootstrap_argv,
    packages_for,
    render_inittab,
    render_profile,
    static_files,
    template_path,
)
from . import accounting
from .accounting import EXTENT_BYTES
from .failures import lvm_error
from .state import Record
from .storage import StorageMixin, _new_volume

# What Debian 12's debootstrap leaves in /etc/profile (its first lines), before the seed's touches.
DEBIAN_PROFILE = 'if [ "$(id -u)" -eq 0 ]; then\n  PATH="/usr/local/sbin:/usr/sbin:/sbin"\nfi\nexport PATH\n'
# The tty gettys of Debian 12's sysvinit-core /etc/inittab, before the seed's touch.
DEBIAN_INITTAB = "".join(f"{n}:{'2345' if n == 1 else '23'}:respawn:/sbin/getty 38400 tty{n}\n" for n in range(1, 7))
# bookworm's kernel and a minbase tree with BASE_PACKAGES, as measured on the testbed's dom0.
KERNEL_VERSION = "6.1.0-28-amd64"
TREE_MB = 431


class TemplatesMixin(StorageMixin):
    """`TemplateHost` on the simulated dom0 (labs.dom0.template), and `templates()` to look inside."""

    def build_template(self, spec: TemplateSpec, log: Callable[[str], None] | None = None) -> TemplateResult:
        TemplateBuilder.check(spec)
        path = template_path(spec.path)
        partial = f"{path}.partial"
        argvs = [bootstrap_argv(spec, partial), ["mv", "-T", "--", partial, path]]
        with self._op("build_template", argvs, path) as state:
            built = state.setdefault("templates", {})
            if (path in built or path in (self._templates or ())) and not spec.replace:
                raise Dom0Error(f"{path} already exists: choose another path, or replace it (rebuild)")
            files = {**static_files(spec), "/etc/profile": render_profile(DEBIAN_PROFILE)}
            if spec.init == "sysvinit":
                files["/etc/inittab"] = render_inittab(DEBIAN_INITTAB)
            built[path] = {
                "suite": spec.suite,
                "init": spec.init,
                "packages": list(packages_for(spec)),
                "files": files,
                "links": dict(CONSOLE_LINKS) if spec.init == "systemd" else {},
                "kernel_version": KERNEL_VERSION,
                "size_mb": TREE_MB,
                "built_at": time.time(),
            }
            if self._templates is not None:
                self._templates.add(path)
        for line in TemplateBuilder.plan(spec):
            (log or (lambda _line: None))(f"(simulated) {line}")
        # The clones boot the dom0's kernel when the spec names one, as the real builder's result says.
        kernel = spec.kernel or f"{path}/boot/vmlinuz-{KERNEL_VERSION}"
        ramdisk = spec.ramdisk if spec.kernel else f"{path}/boot/initrd.img-{KERNEL_VERSION}"
        return TemplateResult(
            path=path,
            kernel=kernel,
            ramdisk=ramdisk,
            size_mb=TREE_MB,
            packages=packages_for(spec),
        )

    def create_thin_volume(self, name: str, size_mb: int) -> Volume:
        names.volume_name(name)
        vg, pool = self.config.volume_group, self._require_pool()
        extents = accounting.extents(size_mb)
        argv = ["lvcreate", "-y", "-V", f"{size_mb}m", "-T", f"{vg}/{pool}", "-n", name]
        with self._op("create_thin_volume", [argv], name) as state:
            if name in state["volumes"]:
                raise lvm_error(VolumeExists, argv, f'Logical Volume "{name}" already exists in volume group "{vg}"')
            if max(accounting.pool_percents(self.config, state)) >= accounting.THIN_POOL_REFUSE_PERCENT:
                raise lvm_error(InsufficientSpace, argv, accounting.pool_threshold_line(self.config))
            state["volumes"][name] = _new_volume(state, extents, thin=True)
        return Volume(name, extents * EXTENT_BYTES, self._vg_path(name))

    def rename_volume(self, name: str, new_name: str) -> Volume:
        names.volume_name(name)
        names.volume_name(new_name)
        vg = self.config.volume_group
        argv = ["lvrename", vg, name, new_name]
        with self._op("rename_volume", [argv], name) as state:
            vols = state["volumes"]
            if name not in vols:
                line = f'Existing logical volume "{name}" not found in volume group "{vg}"'
                raise lvm_error(VolumeNotFound, argv, line)
            if new_name in vols:
                line = f'Logical Volume "{new_name}" already exists in volume group "{vg}"'
                raise lvm_error(VolumeExists, argv, line)
            vols[new_name] = vols.pop(name)
            size: int = vols[new_name]["extents"] * EXTENT_BYTES
        return Volume(new_name, size, self._vg_path(new_name))

    def templates(self) -> dict[str, Record]:
        """The trees built on this host (path -> suite, files, links, kernel_version, size_mb...), for tests."""
        with self._locked(readonly=True) as state:
            return {path: dict(t) for path, t in state.get("templates", {}).items()}
