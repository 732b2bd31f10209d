"""Domain config files on the simulated dom0, rendered by the real domconfig module.

A written config is kept in the shared state with its text (exactly what
`render_xl`/`render_xm` give for the spec), its autostart link and the spec
itself, which `create` starts. `bridge_exists` is here too: like the config
commands, it is a plain command that fails with CommandFailed.
"""

from __future__ import annotations

import dataclasses

from .. import names
from ..base import DomainSpec
from ..domconfig import render_xl, render_xm
from .faults import FaultsMixin


class ConfigMixin(FaultsMixin):
    """The `Dom0Host` domain config methods and `bridge_exists`."""

    def bridge_exists(self, bridge: str) -> bool:
        names.bridge(bridge)
        with self._op("bridge_exists", [["test", "-d", f"/sys/class/net/{bridge}/bridge"]], bridge, readonly=True):
            pass
        return bridge == self.config.bridge or bridge in self.config.extra.get("sim_bridges", ())

    def bridge_addresses(self, bridge: str) -> tuple[str, ...]:
        names.bridge(bridge)
        with self._op("bridge_addresses", [["ip", "addr", "show", "dev", bridge]], bridge, readonly=True) as state:
            return tuple(state.get("bridge_addresses", {}).get(bridge, ()))

    def assign_address(self, bridge: str, cidr: str) -> None:
        """Tests and the demo: put an address on a simulated bridge, as `ip addr add` would."""
        with self._locked() as state:
            state.setdefault("bridge_addresses", {}).setdefault(names.bridge(bridge), []).append(cidr)

    def config_path(self, name: str) -> str:
        return f"{self.config.config_dir}/{names.domain_name(name)}.cfg"

    def _auto_path(self, name: str) -> str:
        return f"{self.config.auto_dir}/{names.domain_name(name)}.cfg"

    def write_config(self, spec: DomainSpec, autostart: bool = True) -> str:
        # The real renderer, so tests read exactly what the real host would write.
        text = (render_xm if self.toolstack == "xm" else render_xl)(spec)  # validates the whole spec
        path, link = self.config_path(spec.name), self._auto_path(spec.name)
        if autostart:
            argvs = [
                ["write_file", path],
                ["mkdir", "-p", "--", self.config.auto_dir],
                ["ln", "-sfn", "--", path, link],
            ]
        else:
            argvs = [["write_file", path], ["rm", "-f", "--", link]]
        with self._op("write_config", argvs, spec.name) as state:
            state["configs"][spec.name] = {
                "path": path,
                "text": text,
                "autostart": bool(autostart),
                "auto_path": link if autostart else None,
                "spec": dataclasses.asdict(spec),
            }
        return path

    def remove_config(self, name: str) -> bool:
        path, link = self.config_path(name), self._auto_path(name)
        argv = ["rm", "-f", "--", path, link]
        with self._op("remove_config", [argv], name) as state:
            removed: bool = state["configs"].pop(name, None) is not None
        return removed
