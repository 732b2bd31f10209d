"""Looking inside the simulated host, for tests, benchmarks and the demo (not part of `Dom0Host`).

`volumes()`, `domains()`, `configs()`, `saved_images()` and `events()` copy
out the shared state; `volume_serial(name)` tells a recreated volume from the
old one; `history` lists the argv each operation would have run (from every
process); `reset()` forgets everything.
"""

from __future__ import annotations

import copy

from .. import names
from ..errors import VolumeNotFound
from .accounting import EXTENT_BYTES
from .state import HISTORY_LIMIT, Record, SimulatedBase, empty_state
from .xl import state_string


class InspectionMixin(SimulatedBase):
    """Read-only views of the state, and `reset`."""

    @property
    def history(self) -> list[list[str]]:
        """The argv of every simulated command, oldest first (from all processes; the last 1000)."""
        with self._locked(readonly=True):
            return self._read_history()[-HISTORY_LIMIT:]

    def clear_history(self) -> None:
        with self._locked(readonly=True):
            with open(self.history_path, "w", encoding="utf-8"):
                pass

    def events(self) -> list[str]:
        """Timestamped notes on what happened (boots, panics, faults), to debug tests."""
        with self._locked(readonly=True) as state:
            return list(state["events"])

    def volumes(self) -> dict[str, Record]:
        """Every LV: size_bytes, serial, content (None, "fs" or "swap"), template, files, thin..."""
        with self._locked(readonly=True) as state:
            vols: dict[str, Record] = copy.deepcopy(state["volumes"])
        for v in vols.values():
            v["size_bytes"] = v["extents"] * EXTENT_BYTES
        return vols

    def volume_serial(self, name: str) -> int:
        """The creation serial of a volume: a removed and recreated volume gets a new, higher one."""
        names.volume_name(name)
        with self._locked(readonly=True) as state:
            vol = state["volumes"].get(name)
        if vol is None:
            raise VolumeNotFound(f'Failed to find logical volume "{self.config.volume_group}/{name}"')
        serial: int = vol["serial"]
        return serial

    def domains(self) -> dict[str, Record]:
        """Every guest domain (not Domain-0), with its xl state string under "state"."""
        with self._locked(readonly=True) as state:
            doms: dict[str, Record] = copy.deepcopy(state["domains"])
        for d in doms.values():
            d["state"] = state_string(d)
        return doms

    def configs(self) -> dict[str, Record]:
        """Every written config: path, text, autostart, auto_path, spec."""
        with self._locked(readonly=True) as state:
            written: dict[str, Record] = copy.deepcopy(state["configs"])
        return written

    def saved_images(self) -> dict[str, str]:
        """Saved image path -> domain name."""
        with self._locked(readonly=True) as state:
            return {p: s["name"] for p, s in state["saved"].items()}

    def reset(self) -> None:
        """Forget everything: volumes, domains, configs, images, faults and history."""
        with self._locked() as state:
            state.clear()
            state.update(empty_state())
            with open(self.history_path, "w", encoding="utf-8"):
                pass
