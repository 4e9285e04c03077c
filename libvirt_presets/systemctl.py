"""The only door to systemctl: argv lists, `--` before unit names, a timeout, one log line.

Every external process of the project goes through `run()`, so tests and benchmarks can count
and inspect calls in one place.

Test seams, read here and nowhere else: LIBVIRT_UNITS_SYSTEMCTL names the systemctl binary
(default: `systemctl` on PATH) and LIBVIRT_UNITS_SYSTEMCTL_TIMEOUT its timeout in seconds
(default 90, systemd's own default job timeout).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time

from .report import log
from .units import is_valid_unit_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

    from .host import Root

SYSTEMCTL_TIMEOUT = 90.0
SYSTEMCTL_ENV = "LIBVIRT_UNITS_SYSTEMCTL"
TIMEOUT_ENV = "LIBVIRT_UNITS_SYSTEMCTL_TIMEOUT"
# Exit statuses of a call that never ran to completion, as coreutils' timeout/env report them.
TIMED_OUT, CANNOT_RUN, NOT_FOUND = 124, 126, 127


class CommandError(Exception):
    """A system tool could not be run at all (missing, not executable, timed out)."""

    def __init__(self, message: str, returncode: int = CANNOT_RUN) -> None:
        super().__init__(message)
        self.returncode = returncode


def default_binary() -> str:
    return os.environ.get(SYSTEMCTL_ENV) or shutil.which("systemctl") or "/usr/bin/systemctl"


def default_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return SYSTEMCTL_TIMEOUT
    return value if 0 < value < float("inf") else SYSTEMCTL_TIMEOUT


def _verb(argv: Sequence[str]) -> str:
    """`systemctl --root=R --no-reload preset -- a` -> `systemctl preset`, for messages."""
    words = [os.path.basename(argv[0])] if argv else []
    words += [next((a for a in argv[1:] if not a.startswith("-")), "")]
    return " ".join(w for w in words if w)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the child and anything it forked (a hung systemctl may have a helper running)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def run(argv: Sequence[str], timeout: float = SYSTEMCTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run one command (argv list, never a shell) with a timeout; CommandError if it cannot
    run or does not finish in time. Output is decoded leniently: a hostile byte is no crash."""
    argv = list(argv)
    log.debug("running %s", " ".join(argv))
    try:
        # Its own process group, so a timeout kills everything it started, not just itself.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            encoding="utf-8", errors="replace", start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{argv[0]}: not found", NOT_FOUND) from exc
    except OSError as exc:  # not executable, not a binary, argument list too long, ...
        code = CANNOT_RUN if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 1
        raise CommandError(f"{argv[0]}: cannot run: {exc.strerror or exc}", code) from exc
    with proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandError(f"{_verb(argv)}: timed out after {timeout:g} s", TIMED_OUT) from None
        except BaseException:  # Ctrl-C: do not leave a systemctl behind in its own group
            _kill_group(proc)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _checked_units(units: Sequence[str]) -> list[str]:
    bad = [u for u in units if not is_valid_unit_name(u)]
    if bad:
        raise ValueError(f"refusing invalid unit name {bad[0]!r}")
    return list(units)


class UnitState:
    """The few manager properties the restart decision needs (systemctl show)."""

    __slots__ = ("name", "load_state", "active_state", "type", "refuse_manual_stop", "invocation_id",
                 "reload_result")

    def __init__(self, name: str, load_state: str = "", active_state: str = "", type: str = "",
                 refuse_manual_stop: bool = False, invocation_id: str = "", reload_result: str = "") -> None:
        self.name = name
        self.load_state = load_state
        self.active_state = active_state
        self.type = type
        self.refuse_manual_stop = refuse_manual_stop
        self.invocation_id = invocation_id
        # result of the last reload ("success", "exit-code", ...; reset when a reload begins)
        self.reload_result = reload_result


UNMARK = "-needs-restart -needs-reload"  # systemctl set-property UNIT Markers=...
SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "Type", "RefuseManualStop", "InvocationID", "ReloadResult")


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
        states[name] = st
    return states


class Systemctl:
    """systemctl bound to one root: offline (`--root`) for an installroot, live for `/`."""

    __slots__ = ("root", "binary", "timeout", "calls", "unusable")

    def __init__(self, root: Root = "/", binary: str | None = None, timeout: float | None = None,
                 calls: list[list[str]] | None = None, unusable: tuple[int, str] | None = None) -> None:
        self.root = root
        self.binary = default_binary() if binary is None else binary
        self.timeout = default_timeout() if timeout is None else timeout
        self.calls: list[list[str]] = [] if calls is None else calls
        # Why systemctl cannot be used at all (missing, hung), with the exit status we gave it:
        # later calls fail at once, so a hung systemctl costs one timeout, not one per unit.
        self.unusable = unusable

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
        if self.unusable is not None:
            code, why = self.unusable
            return subprocess.CompletedProcess(argv, code, "", f"{why}; not tried again")
        self.calls.append(argv)
        start = time.monotonic()
        try:
            result = run(argv, timeout=self.timeout)
        except CommandError as exc:
            # A failed call, never an exception: callers warn per unit and carry on.
            if exc.returncode in (TIMED_OUT, CANNOT_RUN, NOT_FOUND):
                self.unusable = (exc.returncode, str(exc))
            return subprocess.CompletedProcess(argv, exc.returncode, "", str(exc))
        log.debug("%s -> %d in %.3f s", args[0] if args else "", result.returncode, time.monotonic() - start)
        return result

    def preset(self, units: Sequence[str], user: bool = False,
               reload: bool = False) -> subprocess.CompletedProcess[str]:
        """`reload=True` (live system units only) lets systemctl reload the manager itself
        afterwards: that reload then also serves the transaction's own daemon-reload."""
        scope = ["--global"] if user else []
        no_reload = [] if reload and not user and not self.offline else ["--no-reload"]
        return self._run(*scope, *no_reload, "preset", units=units)

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

    def try_reload_or_restart(self, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self._live("try-reload-or-restart", units=units)

    def restart(self, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Restarts the running units and starts the stopped ones."""
        return self._live("restart", units=units)

    def reload_or_restart(self, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self._live("reload-or-restart", units=units)

    def stop(self, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self._live("stop", units=units)

    def unmark(self, unit: str) -> subprocess.CompletedProcess[str]:
        """Take systemd's restart and reload marks off one unit (runtime state only). Both go:
        on systemd < 255 `--marked` restarts a needs-reload unit as well."""
        if not is_valid_unit_name(unit):
            raise ValueError(f"refusing invalid unit name {unit!r}")
        return self._live("set-property", "--", unit, f"Markers={UNMARK}")
