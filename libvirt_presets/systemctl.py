"""The only door to systemctl: argv lists, `--` before unit names, a timeout, one log line.

Every external process of the project goes through `run()`, so tests and benchmarks can count
and inspect calls in one place.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .units import is_valid_unit_name

log = logging.getLogger("dnf.plugin.libvirt-units")

SYSTEMCTL_TIMEOUT = 90.0


class CommandError(Exception):
    """A system tool could not be run at all (missing, timed out)."""


def run(argv: Sequence[str], timeout: float = SYSTEMCTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    log.debug("running %s", " ".join(argv))
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{' '.join(argv[:3])}: timed out after {timeout:.0f} s") from exc


def _checked_units(units: Sequence[str]) -> list[str]:
    bad = [u for u in units if not is_valid_unit_name(u)]
    if bad:
        raise ValueError(f"refusing invalid unit name {bad[0]!r}")
    return list(units)


@dataclass
class UnitState:
    """The few manager properties the restart decision needs (systemctl show)."""

    name: str
    load_state: str = ""
    active_state: str = ""
    active_enter_usec: int = 0
    type: str = ""
    refuse_manual_stop: bool = False
    main_pid: int = 0
    invocation_id: str = ""
    # result of the last reload ("success", "exit-code", ...; reset when a reload begins)
    reload_result: str = ""


SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "ActiveEnterTimestampMonotonic",
                   "Type", "RefuseManualStop", "MainPID", "InvocationID", "ReloadResult")


def parse_show(text: str, names: Sequence[str]) -> dict[str, UnitState]:
    """`systemctl show -p ... a b c` prints one block per unit, in argument order.

    Inside a block the properties come in systemd's own order, not the `-p` order.
    """
    blocks = [b for b in text.strip().split("\n\n") if b.strip()] if text.strip() else []
    states: dict[str, UnitState] = {}
    for name, block in zip(names, blocks):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        st = UnitState(name=name)
        st.load_state = props.get("LoadState", "")
        st.active_state = props.get("ActiveState", "")
        st.type = props.get("Type", "")
        st.refuse_manual_stop = props.get("RefuseManualStop", "no") == "yes"
        st.invocation_id = props.get("InvocationID", "")
        st.reload_result = props.get("ReloadResult", "")
        try:
            st.active_enter_usec = int(props.get("ActiveEnterTimestampMonotonic", "0") or 0)
            st.main_pid = int(props.get("MainPID", "0") or 0)
        except ValueError:
            pass
        states[name] = st
    return states


@dataclass
class Systemctl:
    """systemctl bound to one root: offline (`--root`) for an installroot, live for `/`."""

    root: Path = Path("/")
    binary: str = field(default_factory=lambda: shutil.which("systemctl") or "/usr/bin/systemctl")
    calls: list[list[str]] = field(default_factory=list)

    @property
    def offline(self) -> bool:
        return os.path.realpath(self.root) != "/"

    def _run(self, *args: str, units: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        argv = [self.binary]
        if self.offline:
            argv.append(f"--root={self.root}")
        argv += list(args)
        if units:
            argv += ["--", *_checked_units(units)]
        self.calls.append(argv)
        start = time.monotonic()
        result = run(argv)
        log.debug("%s -> %d in %.3f s", args[0] if args else "", result.returncode, time.monotonic() - start)
        return result

    def preset(self, units: Sequence[str], user: bool = False) -> subprocess.CompletedProcess[str]:
        scope = ["--global"] if user else []
        return self._run(*scope, "--no-reload", "preset", units=units)

    def is_enabled(self, units: Sequence[str], user: bool = False) -> list[str]:
        """One state word per unit, in order (enabled, disabled, masked, static, ...)."""
        scope = ["--global"] if user else []
        result = self._run(*scope, "is-enabled", units=units)
        words = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        return words if len(words) == len(units) else ["unknown"] * len(units)

    def _live(self, *args: str, units: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        if self.offline:
            raise RuntimeError("live systemctl call against an installroot")  # never by design
        return self._run(*args, units=units)

    def daemon_reload(self) -> subprocess.CompletedProcess[str]:
        return self._live("daemon-reload")

    def show(self, units: Sequence[str]) -> dict[str, UnitState]:
        if not units:
            return {}
        result = self._live("show", "-p", ",".join(SHOW_PROPERTIES), units=units)
        return parse_show(result.stdout, units)

    def try_restart(self, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self._live("try-restart", units=units)

    def try_reload_or_restart(self, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self._live("try-reload-or-restart", units=units)

    def start(self, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self._live("start", units=units)
