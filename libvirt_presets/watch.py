"""The guards' dead man's switch: no guard may outlive the dnf that placed it.

A dnf killed while rpm runs (OOM, SSH drop, SIGKILL) leaves its guards in /run and in the
manager: `systemctl restart libvirtd` is refused until the next dnf command or a reboot. Code
in dnf's own process cannot act after a SIGKILL, so begin() starts this watcher beside dnf. It
reads a pipe whose other end only dnf holds: `done` means dnf took the guards down itself; end
of file without it means dnf is gone, and the watcher removes the guard drop-ins and reloads the
manager. Everything else (presets, restores, restarts) waits for `resume`, as the journal says.

Run as `python3 -m libvirt_presets.watch ROOT UNIT...` (by session.begin only).
"""

from __future__ import annotations

import os
import subprocess
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

    from .host import Root

DONE = b"done\n"
HOME = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # where this package is imported from


def start(root: Root, units: Sequence[str]) -> subprocess.Popen[bytes] | None:
    """Start the watcher for `units`; None if it cannot be started (no worse than before)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "libvirt_presets.watch", str(root), *units],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in dnf's process group: a Ctrl-C must not kill it
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (HOME, os.environ.get("PYTHONPATH"))))},
        )
    except OSError:
        return None


def release(watcher: subprocess.Popen[bytes] | None) -> None:
    """dnf took the guards down itself (files removed, manager reloaded): the watcher exits."""
    if watcher is None or watcher.stdin is None:
        return
    try:
        watcher.stdin.write(DONE)
        watcher.stdin.close()
        watcher.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        pass


def main(argv: Sequence[str]) -> int:
    root, units = argv[0], list(argv[1:])
    said = sys.stdin.buffer.read()  # until dnf writes DONE, or dies and the pipe closes
    if said == DONE:
        return 0
    from . import guards, report
    from .systemctl import Systemctl

    removed = guards.remove(root, units)
    Systemctl(root).daemon_reload()
    report.warn(f"dnf ended before libvirt-units took its guards down: removed {len(removed)}; "
                "run 'dnf libvirt-units resume' to finish the transaction")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
