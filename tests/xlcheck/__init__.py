"""Real `xl -N create` on a machine without Xen (see xlcheck.py)."""
