"""Whether a root is the running host: its own root, managed by a booted systemd.

Only then may anything talk to the service manager (guards, daemon-reload, restarts). Decided
the way systemctl itself decides whether to talk to the manager, so that the plugin never acts
where the package scriptlets' own `systemctl` calls would be ignored:

- the root is `/` (an `--installroot` never is);
- `$SYSTEMD_OFFLINE` is not true (image builders such as rpm-ostree and mkosi set it);
- not in a chroot: `/` is the root of PID 1 (`/proc/1/root`), unless `$SYSTEMD_IGNORE_CHROOT`
  says otherwise. A build root with the host's /run bind-mounted in would otherwise see the
  host's manager and guard, reload and restart the host's services;
- systemd booted the machine (`/run/systemd/system` exists, as sd_booted(3) checks).
"""

from __future__ import annotations

import os

from .units import parse_boolean

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike

    # A root as the core takes it: a string, or a path object (tests, the CLI). The core's own
    # paths are strings: pathlib (and the ntpath it loads) would cost dnf's process 4.5 M
    # instructions on every transaction that concerns us.
    Root = str | PathLike[str]


def _env_flag(name: str) -> bool | None:
    """systemd's getenv_bool(): True, False, or None when unset or not a boolean."""
    return parse_boolean(os.environ.get(name, "").strip())


def in_chroot() -> bool:
    """True when `/` is not the root of PID 1; also when that cannot be told (no /proc):
    a booted host always has /proc, so an unknown answer is not a live host."""
    if _env_flag("SYSTEMD_IGNORE_CHROOT"):
        return False
    try:
        ours, init = os.stat("/"), os.stat("/proc/1/root")
    except OSError:
        return True
    return (ours.st_dev, ours.st_ino) != (init.st_dev, init.st_ino)


def is_live(root: Root) -> bool:
    """True only for the host's own root with systemd as its running init (module docstring)."""
    if os.path.realpath(root) != "/":
        return False
    offline = _env_flag("SYSTEMD_OFFLINE")
    if offline is not None:
        return not offline and os.path.isdir("/run/systemd/system")
    return not in_chroot() and os.path.isdir("/run/systemd/system")
