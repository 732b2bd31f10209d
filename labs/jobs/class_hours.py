"""Guest jobs of class hours: `save` (xl save to /var/lib/xen/save) and `restore` (the student's "Wake").

Registered with labs.jobs.guest's `handles`, which imports this module, so `run_task` finds them.
"""

from __future__ import annotations

from labs.dom0.base import save_path
from labs.jobs.guest import _domains, _start, handles
from labs.jobs.progress import Recorder
from labs.models import Guest, Xl


@handles("save")
def _save(rec: Recorder, guest: Guest) -> None:
    name, path = guest.domain_name, save_path(guest.domain_name)
    with rec.step("save"):
        if name not in _domains(rec):
            # A retry after the save went through, or a VM that was off: either way it is not running.
            found = rec.call(rec.host.saved_image_exists, path)
            rec.log(f"{name} is not running; " + (f"{path} holds it" if found else "nothing to save"))
            return
        rec.call(rec.host.save, name, path)
        rec.log(f"xl save {name} {path}: its memory is free")


@handles("restore")
def _restore(rec: Recorder, guest: Guest) -> None:
    name, path = guest.domain_name, save_path(guest.domain_name)
    fresh = False
    with rec.step("restore"):
        d = _domains(rec).get(name)
        if d is not None and d.letter in Xl.UP:
            rec.log(f"{name} is already running")  # restored by xendomains at boot, or by hand
        elif rec.call(rec.host.saved_image_exists, path):
            if d is not None:
                rec.call(rec.host.destroy, name)
                rec.log(f"destroyed leftover domain {name} ({d.state})")
            rec.call(rec.host.restore, path)
            rec.log(f"xl restore {path}")
        else:
            rec.log(f"no save image {path}: starting {name} afresh")
            fresh = True
    if fresh:
        _start(rec, guest)
    forget_saved_image(rec, guest)


def forget_saved_image(rec: Recorder, guest: Guest) -> None:
    """Delete the guest's save image: once the domain runs (or its disk is reset or gone) it is stale, and
    xendomains would restore it at the host's next boot onto a disk that has moved on."""
    path = save_path(guest.domain_name)
    if rec.call(rec.host.remove_saved_image, path):
        rec.log(f"removed {path}")
