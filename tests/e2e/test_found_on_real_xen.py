"""Behaviour the real Xen host showed that the fixtures had not: pinned here, next to the e2e test that found it."""

from __future__ import annotations

from labs.dom0.base import Domain
from labs.dom0.toolstack import parse_list_table

# `xl list` on the testbed while its two CPUs were busy: a guest that had
# just been created, runnable but not on a CPU at that instant, has no flag.
BUSY_HOST_LIST = """\
Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     2     r-----    2978.8
e2e-bob                                      4   128     1     -b----       2.1
e2e-alice                                    5   128     1     ------       6.0
"""


def test_a_runnable_domain_without_flags_counts_as_running():
    letters = {d.name: d.letter for d in parse_list_table(BUSY_HOST_LIST)}
    # Reading it as "" made the provisioning job call the guest stopped and destroy it.
    assert letters == {"Domain-0": "r", "e2e-bob": "b", "e2e-alice": "r"}


def test_flags_still_win_and_an_unknown_state_stays_unknown():
    assert Domain("a", 1, 64, 1, "--p---").letter == "p"
    assert Domain("a", 1, 64, 1, "---s--").letter == "s"
    assert Domain("a", 1, 64, 1, "").letter == ""  # `xl list -l` carries no state column
