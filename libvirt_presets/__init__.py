"""libvirt-units core: per-unit systemd presets and batched restarts for rpm transactions.

Gather facts (snapshot, facts, rpmdb) -> decide (planner) -> apply (executor) -> tell (report).
"""

__version__ = "0.1.0"
