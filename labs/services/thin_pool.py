"""Thin-pool fill: how full a host's LVM thin pool was at its last health check, and when that is too full."""

from __future__ import annotations

from dataclasses import dataclass

from django.template.defaultfilters import floatformat
from django.utils.translation import gettext as _

from labs.models import Host

# A full thin pool makes every guest on it fail writes (I/O errors or a
# hang). The guests already there keep writing after they are cloned, so new
# thin clones stop well before 100 %: at 90 % of the pool's data or metadata
# the operator still has room to extend the pool before anyone notices.
THIN_POOL_FULL_PERCENT = 90.0


@dataclass(frozen=True)
class PoolFill:
    """A host's thin pool as its last health check read it (percent used)."""

    pool: str  # "<vg>/<pool>"
    data_percent: float
    metadata_percent: float | None

    @property
    def full(self) -> bool:
        return thin_pool_full(self.data_percent, self.metadata_percent)

    def describe(self) -> str:
        """The fill in words, in the current language: the host pages, the health report, placement's refusal.

        e.g. "Thin pool vg0/pool: 42 % data, 7 % metadata used".
        """
        data = floatformat(self.data_percent, -1)
        if self.metadata_percent is None:
            return _("Thin pool %(pool)s: %(data)s %% data used (metadata not reported)") % {
                "pool": self.pool,
                "data": data,
            }
        return _("Thin pool %(pool)s: %(data)s %% data, %(metadata)s %% metadata used") % {
            "pool": self.pool,
            "data": data,
            "metadata": floatformat(self.metadata_percent, -1),
        }


def thin_pool_full(data_percent: float, metadata_percent: float | None) -> bool:
    """At or above THIN_POOL_FULL_PERCENT in data or metadata: no new thin clones there."""
    return max(data_percent, metadata_percent or 0.0) >= THIN_POOL_FULL_PERCENT


def thin_pool_fill(host: Host) -> PoolFill | None:
    """The fill of the host's thin pool at its last health check; None when it has no pool or it was not read."""
    check = (host.health_report or {}).get("thin_pool") if host.thin_pool else None
    if not isinstance(check, dict) or check.get("data_percent") is None:
        return None
    metadata = check.get("metadata_percent")
    return PoolFill(
        f"{host.volume_group}/{host.thin_pool}",
        float(check["data_percent"]),
        None if metadata is None else float(metadata),
    )
