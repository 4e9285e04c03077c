"""A throw-away systemd (PID 1) for end-to-end tests, booted with systemd-nspawn.

The machines these tests run on do not have systemd as PID 1, yet try-restart and
try-reload-or-restart only mean something to a live service manager.  So we boot the host's own
systemd inside a container whose root is a copy-on-write overlay of the host's root:

    tmpfs at OV                      (everything the container writes lands here, and is gone
      OV/upper, OV/work, OV/merged    when we unmount it)
    overlay lowerdir=/,upperdir=OV/upper,workdir=OV/work at OV/merged
    systemd-nspawn -D OV/merged --boot ...

Facts this module relies on (systemd 252, util-linux 2.38; see /work/shared/docs/e2e-recipe.md):

- An overlay of / only contains the root filesystem, not the mounts below it, and nspawn puts a
  fresh tmpfs on the guest's /tmp.  A pytest ``tmp_path`` is therefore *not* visible inside:
  share host directories with ``binds`` (read-only) or ``writable_binds``.
- ``--register=no --keep-unit`` are required because the host has no systemd-machined/PID 1, and
  ``systemd.firstboot=off`` stops boot from waiting at the first-boot wizard.
- Never boot systemd outside a container on the host's own root: its boot clean-up wipes /tmp and
  it starts every enabled host service.
- Machine names are unique per container (``unique_machine_name``): systemd-nspawn 257 and later
  keep a mount point per name while a container runs, even with ``--register=no``, and refuse a
  second container of the same name (``Mount point '/run/systemd/nspawn/unix-export/NAME' exists
  already``); after a SIGKILLed nspawn the name stays taken.  nspawn 252 did not mind.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "GUEST_ENV",
    "BootError",
    "BootedContainer",
    "ContainerCommandError",
    "nspawn_unavailable_reason",
    "unique_machine_name",
]

# Commands inside the guest get exactly this environment (plus what the caller adds): nothing
# from the host process leaks in (PYTHONPATH, VIRTUAL_ENV, a pyenv PATH, a pager, colours...).
GUEST_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}

# The systemd state names `systemctl is-system-running` prints once boot has settled.
_BOOTED_STATES = ("running", "degraded")
_CONSOLE_TAIL_LINES = 60
_PR_SET_PDEATHSIG = 1
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MACHINE_NUMBERS = itertools.count(1)
_MACHINE_NAME_MAX = 64  # a host name, which nspawn makes of it


def unique_machine_name(prefix: str = "e2e-guest") -> str:
    """``PREFIX-PID-N``: unique among the containers of every test process on this machine."""
    suffix = f"-{os.getpid()}-{next(_MACHINE_NUMBERS)}"
    return prefix[:_MACHINE_NAME_MAX - len(suffix)] + suffix


class BootError(RuntimeError):
    """The container did not come up; the message carries the end of the console log."""


class ContainerCommandError(subprocess.CalledProcessError):
    """A command inside the guest failed; unlike CalledProcessError, str() shows its output."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}\n--- stdout ---\n{self.stdout or ''}"
            f"--- stderr ---\n{self.stderr or ''}"
        )


def _host_run(argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a host tool (mount, umount); raise with its stderr when it fails."""
    return subprocess.run(
        list(argv), check=True, capture_output=True, text=True, timeout=timeout
    )


def _mount_overlay_root(ov: Path) -> Path:
    """Mount a tmpfs at ``ov`` and an overlay of / on ``ov/merged``; return ``ov/merged``."""
    _host_run(["mount", "-t", "tmpfs", "-o", "mode=0755", "e2e-nspawn-tmpfs", str(ov)])
    try:
        for name in ("upper", "work", "merged"):
            (ov / name).mkdir()
        options = f"lowerdir=/,upperdir={ov / 'upper'},workdir={ov / 'work'}"
        _host_run(["mount", "-t", "overlay", "e2e-nspawn-overlay", "-o", options,
                   str(ov / "merged")])
    except BaseException:
        _unmount(ov)
        raise
    return ov / "merged"


def _unmount(path: Path) -> None:
    """Unmount ``path``; fall back to a lazy unmount if something still holds it busy."""
    try:
        _host_run(["umount", str(path)])
    except subprocess.CalledProcessError:
        _host_run(["umount", "--lazy", str(path)])


def _is_mountpoint(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        # Field 5 is the mount point; octal escapes never occur in our own mkdtemp paths.
        return any(line.split()[4] == target for line in mountinfo)


@functools.cache
def nspawn_unavailable_reason() -> str | None:
    """Why a container cannot be booted here, or None if it can (for ``pytest.skip``).

    Cheap (a few ms): checks privileges and tools, then really mounts a tmpfs and an overlay of /
    and unmounts them again, since only trying proves that mounting is allowed.
    """
    if os.geteuid() != 0:
        return "booting a systemd-nspawn container needs root"
    for tool in ("systemd-nspawn", "nsenter", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH (apt-get install systemd-container util-linux)"
    if not Path("/usr/lib/systemd/systemd").exists():
        return "/usr/lib/systemd/systemd missing: nothing to boot as the container's PID 1"
    with open("/proc/filesystems", encoding="utf-8") as filesystems:
        # Only for the message: overlay may still autoload on first mount; the probe decides.
        overlay_listed = any(line.split()[-1] == "overlay" for line in filesystems if line.strip())
    probe = Path(tempfile.mkdtemp(prefix="e2e-nspawn-probe-"))
    try:
        _mount_overlay_root(probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        return (f"cannot mount a tmpfs plus an overlay of / (overlay listed in /proc/filesystems:"
                f" {overlay_listed}): {detail}")
    else:
        _unmount(probe / "merged")
        _unmount(probe)
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()
    return None


def _set_parent_death_signal() -> None:
    """Runs in the forked child: if the test process dies hard, nspawn gets SIGTERM (and shuts
    the guest down).  The signal follows the *thread* that forked, so start containers from the
    main thread (pytest fixtures do)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()  # comm may contain spaces and ')'


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and fields[1] == str(pid):  # fields[1] is the ppid
                children.append(int(entry.name))
    return children


def _is_namespace_init(pid: int, *, running_systemd: bool = True) -> bool:
    """True once ``pid`` is PID 1 of its own PID namespace and (unless ``running_systemd`` is
    false) has exec'd systemd."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
        comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except (FileNotFoundError, ProcessLookupError):
        return False
    nspids = next((line.split()[1:] for line in status.splitlines()
                   if line.startswith("NSpid:")), [])
    return len(nspids) >= 2 and nspids[-1] == "1" and (comm == "systemd" or not running_systemd)


class BootedContainer:
    """Boot the host's systemd in an nspawn container on a throw-away overlay of /.

    Use as a context manager::

        with BootedContainer(binds={project_root: "/srv/src"}) as guest:
            guest.write_file("/etc/systemd/system/a.service", UNIT)
            guest.run(["systemctl", "daemon-reload"])

    ``binds`` are read-only, ``writable_binds`` read-write; both map a host path to a guest path.
    The guest boots ``unit`` (default multi-user.target, about 2.6 s here, mostly the host's
    PostgreSQL; basic.target skips the host's services and boots in about 0.3 s).  ``mask`` names
    units to mask for this boot (``systemd.mask=``); ``kernel_args`` are appended to the guest's
    kernel command line (e.g. ``systemd.wants=x.service``).  ``__enter__`` returns once
    ``systemctl is-system-running --wait`` says running or degraded (then ``failed_units`` holds
    ``systemctl --failed``); otherwise it cleans up and raises BootError with the console log.
    ``machine`` is the container's name (default: a fresh ``unique_machine_name()``).
    """

    def __init__(
        self,
        binds: Mapping[Path, str] | None = None,
        *,
        writable_binds: Mapping[Path, str] | None = None,
        mask: Sequence[str] = (),
        kernel_args: Sequence[str] = (),
        machine: str | None = None,
        unit: str = "multi-user.target",
        boot_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        base_dir: Path | None = None,
    ) -> None:
        self._binds = [("--bind-ro", Path(h), g) for h, g in (binds or {}).items()]
        self._binds += [("--bind", Path(h), g) for h, g in (writable_binds or {}).items()]
        for _, host, guest in self._binds:
            if ":" in str(host) or ":" in guest:
                raise ValueError(f"bind paths must not contain ':': {host} -> {guest}")
            if not guest.startswith("/"):
                raise ValueError(f"guest bind path must be absolute: {guest}")
        self._mask = list(mask)
        self._kernel_args = list(kernel_args)
        self._machine = machine or unique_machine_name()
        self._unit = unit
        self._boot_timeout = boot_timeout
        self._stop_timeout = stop_timeout
        self._base_dir = base_dir
        self._stack = contextlib.ExitStack()
        self._ov: Path | None = None
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._pid1: int | None = None
        self._graceful_stop = True
        self.boot_seconds: float | None = None
        self.state: str | None = None
        self.failed_units: str = ""

    # -- public API -----------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """Host path of the guest's root (the overlay).  Guest writes to the root filesystem
        show up here; guest-only mounts (its /tmp, /run, binds) do not."""
        return self._require_ov() / "merged"

    @property
    def pid1(self) -> int:
        """Host PID of the guest's systemd."""
        if self._pid1 is None:
            raise RuntimeError("container is not running")
        return self._pid1

    @property
    def nspawn_pid(self) -> int:
        if self._nspawn is None:
            raise RuntimeError("container is not running")
        return self._nspawn.pid

    @property
    def console_log_path(self) -> Path:
        return self._require_ov() / "console.log"

    def console_log(self) -> str:
        """Everything nspawn and the guest's console printed so far."""
        try:
            return self.console_log_path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, RuntimeError):
            return ""

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 120,
        env: Mapping[str, str] | None = None,
        input: str | None = None,  # mirrors subprocess.run
        cwd: str = "/",
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the guest (all its namespaces except cgroup), capturing text.

        The environment is GUEST_ENV updated with ``env``; ``cwd`` is a guest path.  Raises
        ContainerCommandError (shows stdout/stderr) if ``check`` and the exit status is non-zero.
        """
        full_env = {**GUEST_ENV, **(env or {})}
        command = [
            "nsenter", "--target", str(self.pid1), "--mount", "--uts", "--ipc", "--net", "--pid",
            # --wdns opens the directory after entering the mount namespace (guest path).
            f"--wdns={cwd}", "--", *map(str, argv),
        ]
        # Own session: on timeout we kill the whole process group, including nsenter's forked
        # child inside the guest (killing nsenter alone would leave the command running there).
        with subprocess.Popen(
            command, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(input, timeout=timeout)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        result = subprocess.CompletedProcess(list(argv), process.returncode, stdout, stderr)
        if check and result.returncode != 0:
            raise ContainerCommandError(result.returncode, list(argv), result.stdout,
                                        result.stderr)
        return result

    def read_file(self, path: str) -> str:
        """Contents of a guest file (read inside the guest, so guest mounts count)."""
        return self.run(["cat", "--", path]).stdout

    def write_file(self, path: str, text: str, mode: int | None = None) -> None:
        """Create or replace a guest file (parents included), optionally chmod it."""
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
        if mode is not None:
            script += f' && chmod {mode:o} -- "$1"'
        self.run(["sh", "-c", script, "sh", path], input=text)

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> BootedContainer:
        try:
            self._start()
        except BaseException:
            # A guest that failed to boot may not act on a shutdown request for a long time.
            self._graceful_stop = False
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    # -- internals ------------------------------------------------------------------------

    def _require_ov(self) -> Path:
        if self._ov is None:
            raise RuntimeError("container is not set up")
        return self._ov

    def _start(self) -> None:
        for _, host, _guest in self._binds:
            if not host.exists():
                raise FileNotFoundError(f"bind source does not exist: {host}")
        started = time.monotonic()
        ov = Path(tempfile.mkdtemp(prefix="e2e-nspawn-", dir=self._base_dir))
        self._stack.callback(self._forget_dir, ov)
        _mount_overlay_root(ov)
        self._stack.callback(_unmount, ov)
        self._stack.callback(_unmount, ov / "merged")
        self._ov = ov

        argv = [
            "systemd-nspawn", "--quiet", "--directory", str(ov / "merged"),
            f"--machine={self._machine}", "--register=no", "--keep-unit", "--private-network",
            "--console=read-only",
            *(f"{option}={host}:{guest}" for option, host, guest in self._binds),
            "--boot", "--",
            "systemd.firstboot=off", f"systemd.unit={self._unit}",
            *(f"systemd.mask={unit}" for unit in self._mask),
            *self._kernel_args,
        ]
        # The hybrid cgroup layout of some hosts (v1 controllers on a tmpfs, cgroup2 at
        # /sys/fs/cgroup/unified): nspawn 252's own choice there fails ("Failed to attach ... to
        # compat systemd cgroup //payload"), and 262 refuses any v1 layout. A pure cgroup2 guest
        # boots on all of them, as on Fedora.
        env = {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1", **os.environ}
        with open(ov / "console.log", "wb") as log:
            self._nspawn = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, not the guest
                preexec_fn=_set_parent_death_signal,
            )
        self._stack.callback(self._stop)

        deadline = started + self._boot_timeout
        self._pid1 = self._wait_for_pid1(deadline)
        self._wait_until_booted(deadline)
        self.boot_seconds = time.monotonic() - started

    def _boot_failed(self, why: str) -> BootError:
        console = _ANSI_ESCAPE.sub("", self.console_log()).replace("\r", "")
        tail = "\n".join(line for line in console.splitlines() if line.strip())
        tail = "\n".join(tail.splitlines()[-_CONSOLE_TAIL_LINES:])
        return BootError(f"{why}\n--- console log (last {_CONSOLE_TAIL_LINES} lines) ---\n{tail}")

    def _check_nspawn_alive(self) -> None:
        assert self._nspawn is not None
        if self._nspawn.poll() is not None:
            raise self._boot_failed(
                f"systemd-nspawn exited with status {self._nspawn.returncode} during boot")

    def _wait_for_pid1(self, deadline: float) -> int:
        assert self._nspawn is not None
        while time.monotonic() < deadline:
            self._check_nspawn_alive()
            for child in _children(self._nspawn.pid):
                if _is_namespace_init(child):
                    return child
            time.sleep(0.01)
        raise self._boot_failed(f"no systemd PID 1 appeared within {self._boot_timeout:.0f}s")

    def _wait_until_booted(self, deadline: float) -> None:
        # Early on, systemctl cannot reach the manager yet and prints "offline" or fails to
        # connect at once; --wait only blocks once the manager answers.  So: retry until then.
        last = ""
        while (remaining := deadline - time.monotonic()) > 0:
            self._check_nspawn_alive()
            try:
                result = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                                  timeout=remaining)
            except subprocess.TimeoutExpired:
                last = "no answer yet (is-system-running --wait timed out)"
                break
            self.state = result.stdout.strip()
            last = f"{self.state!r} (exit {result.returncode}) {result.stderr.strip()}"
            if self.state in _BOOTED_STATES:
                if self.state == "degraded":
                    self.failed_units = self.run(
                        ["systemctl", "--failed", "--no-pager", "--full"], check=False).stdout
                return
            if self.state in ("stopping", "maintenance"):
                break
            time.sleep(0.05)
        raise self._boot_failed(
            f"guest not running after {self._boot_timeout:.0f}s; last is-system-running: {last}")

    def _stop(self) -> None:
        """Stop the guest: SIGTERM to nspawn (a clean guest shutdown), SIGKILL after a while.

        A guest that failed to boot is killed outright instead: its systemd may not have set up
        its signal handlers yet, so it would ignore the shutdown request nspawn forwards, and
        killing nspawn alone would leave the guest running, re-parented to the host's init."""
        process = self._nspawn
        if process is None:
            return
        if process.poll() is None:
            if not self._graceful_stop:
                self._kill_guests_until_nspawn_exits(process)
            else:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=self._stop_timeout)
                if process.poll() is None:
                    self._kill_guests_until_nspawn_exits(process)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=self._stop_timeout)
        self._nspawn = None
        self._pid1 = None

    def _kill_guests_until_nspawn_exits(self, process: subprocess.Popen[bytes]) -> None:
        # nspawn may still be about to fork the guest (PID 1 not known yet): keep looking until
        # nspawn, whose guest is gone, exits.  SIGKILL to a PID namespace's init kills every
        # process in it.  A PID is only killed while it is nspawn's child, so not recycled.
        deadline = time.monotonic() + self._stop_timeout
        while process.poll() is None and time.monotonic() < deadline:
            for child in _children(process.pid):
                if _is_namespace_init(child, running_systemd=False):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
            time.sleep(0.01)

    @staticmethod
    def _forget_dir(ov: Path) -> None:
        # Only remove the directory once nothing is mounted on it: never rmtree a live overlay
        # of the host's root.
        if _is_mountpoint(ov / "merged") or _is_mountpoint(ov):
            return
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(ov)
