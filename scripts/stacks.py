"""Run the test suite on three stacks: the host, and Debian trixie and sid root filesystems.

    /usr/bin/python3 scripts/stacks.py [--stack host|trixie|sid|all] [-- PYTEST-ARGS...]

(`./scripts/test` runs this after ./scripts/deps and ruff.) Each stack stands for a generation
of RPM systems by its dnf, rpm and systemd versions (see STACKS and the README). The trixie and
sid roots are built from Debian's archive with mmdebstrap, with the packages `scripts/deps
--list` names plus a few of their own, and cached on disk (CACHE_ENV, default DEFAULT_CACHE)
as a tarball and an extracted directory, keyed on suite, sorted package list, mirror and ISO
week. A run never writes into the cached directory: it is the lower layer of an overlay whose
upper layer is thrown away afterwards.

The suite runs in a root as /work/shared/docs/stacks.md describes, without booting it: a
private mount namespace (`unshare --mount`), the overlay, /proc, /sys, /dev, tmpfs /run and
/tmp, the checkout bind-mounted at its own path, a fresh /etc/machine-id, pivot_root, and a
clean environment. The tests that need a live manager boot containers from inside the root with
the root's own systemd-nspawn. There is no PID namespace, so processes left behind in the
run's mount namespace are found and killed when it ends.

Where a root cannot be built (no archive reachable, mmdebstrap fails) that stack is skipped
with one line saying why; the exit status is non-zero when any stack that ran failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE_ENV = "LIBVIRT_UNITS_STACKS_CACHE"
MIRROR_ENV = "LIBVIRT_UNITS_STACKS_MIRROR"  # default: the archive the host's apt uses
DEFAULT_CACHE = Path("/var/cache/libvirt-units/stacks")
# What the roots have besides the suite's own packages (scripts/deps --list).
COMMON_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "git", "procps", "iproute2")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STACK_TIMEOUT = 40 * 60  # seconds; the whole of CI has 90 minutes
MIRROR_TIMEOUT = 15
KILL_WAIT = 10
SUMMARY_LINE = re.compile(r"^=+ (.* in [0-9.]+s.*) =+$")
# The differential preset test prints this line (tests/e2e/test_preset_differential.py).
DIFFERENTIAL_LINE = re.compile(r"^preset differential: .*$")
APT_OPTIONS = (
    # sid's Release carries a Valid-Until a week after its Date; a cached root's apt would
    # otherwise refuse the archive once that week is over.
    'Acquire::Check-Valid-Until "false"',
    'Acquire::Retries "3"',
)


@dataclass(frozen=True)
class Stack:
    name: str
    stands_for: str
    extra_packages: tuple[str, ...] = ()
    # systemd-nspawn >= 258 refuses the hybrid cgroup layout of a Debian 12 host: the root
    # gets a plain cgroup2 mount at /sys/fs/cgroup and the variable for good measure.
    unified_cgroup: bool = False

    @property
    def suite(self) -> str:
        return self.name


HOST = Stack("host", "the machine itself (Debian 12: dnf 4.14, rpm 4.18, systemd 252, RHEL 9 generation)")
STACKS = {
    "trixie": Stack("trixie", "Debian 13 (dnf 4.23, rpm 4.20, systemd 257, RHEL 10 generation)"),
    "sid": Stack(
        "sid", "Debian sid (dnf5 5.4 + dnf 4.24, rpm 6.1, systemd 262, Fedora 43/44 generation)",
        # dnf5 with the actions plugin, as on Fedora; `file` keeps rpmbuild quiet.
        extra_packages=("dnf5", "libdnf5-2", "python3-libdnf5", "python3-libdnf5-python-plugins-loader", "file"),
        unified_cgroup=True,
    ),
}
ALL = ("host", *STACKS)


@dataclass
class Outcome:
    stack: str
    status: str  # "passed", "failed", "skipped"
    line: str
    seconds: float = 0.0
    differential: str = ""
    root_seconds: float | None = None  # getting the root ready (build, extract or cached)


def log(message: str) -> None:
    print(f"stacks: {message}", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Every external tool goes through here: argv lists only, text output."""
    kwargs.setdefault("check", True)
    kwargs.setdefault("text", True)
    return subprocess.run(argv, **kwargs)


# --- building and caching the roots ------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def host_mirror() -> str:
    """The Debian archive to build from: MIRROR_ENV, or the one the host's apt already uses
    ("" when neither names one: the stacks are then skipped, saying so)."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            words = line.split()
            if words[:1] == ["deb"]:
                return next(w for w in words[1:] if not w.startswith("["))
    return ""


def suite_packages() -> list[str]:
    out = run([str(REPO / "scripts" / "deps"), "--list"], capture_output=True).stdout
    return out.split()


def packages_for(stack: Stack) -> list[str]:
    return sorted(set(COMMON_PACKAGES) | set(suite_packages()) | set(stack.extra_packages))


def cache_key(stack: Stack, packages: list[str], mirror: str, today: datetime.date) -> str:
    """A root is rebuilt when its package list or mirror changes, and every ISO week (sid moves
    daily; a week-old root still stands for it)."""
    year, week, _ = today.isocalendar()
    mirror_hash = hashlib.sha256(mirror.encode()).hexdigest()[:12]
    digest = hashlib.sha256("\n".join([stack.suite, *packages, mirror_hash]).encode()).hexdigest()[:12]
    return f"{stack.suite}-{year}-W{week:02d}-{digest}"


def mirror_unreachable(mirror: str, suite: str) -> str | None:
    url = f"{mirror.rstrip('/')}/dists/{suite}/InRelease"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=MIRROR_TIMEOUT):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return f"the Debian archive is not reachable ({url}: {getattr(exc, 'reason', exc)})"


@contextlib.contextmanager
def locked(path: Path):
    """One builder per cache directory at a time (two CI jobs on one machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_root(stack: Stack) -> tuple[Path | None, str]:
    """The cached root directory of `stack`, building it if needed; (None, why) if it cannot be."""
    packages = packages_for(stack)
    mirror = host_mirror()
    if not mirror:
        return None, f"no Debian archive in the host's apt sources, nor in ${MIRROR_ENV}"
    key = cache_key(stack, packages, mirror, datetime.date.today())
    entry = cache_dir() / key
    root, tarball, done = entry / "root", entry / "root.tar.zst", entry / "complete"
    with locked(cache_dir() / ".lock"):
        if done.exists():
            log(f"{stack.name}: cached root {entry}")
            return root, ""
        if tarball.exists() and (entry / "tarball-complete").exists():
            log(f"{stack.name}: extracting cached {tarball}")
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            run(["tar", "--zstd", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf",
                 str(tarball), "-C", str(root)])
            done.touch()
            return root, ""
        why = mirror_unreachable(mirror, stack.suite)
        if why:
            stale = older_root(stack, key)
            if stale is None:
                return None, why
            log(f"{stack.name}: {why}; using the older cached root {stale.parent}")
            return stale, ""
        shutil.rmtree(entry, ignore_errors=True)
        entry.mkdir(parents=True)
        started = time.monotonic()
        log(f"{stack.name}: building {entry} from {mirror} ({len(packages)} packages)")
        argv = ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
                f"--include={','.join(packages)}",
                *(f"--aptopt={option}" for option in APT_OPTIONS),
                stack.suite, str(root), mirror]
        result = run(argv, check=False, capture_output=True)
        if result.returncode != 0:
            tail = [line for line in (result.stderr or "").splitlines() if line.strip()][-3:]
            shutil.rmtree(entry, ignore_errors=True)
            return None, f"mmdebstrap exited {result.returncode}: {' | '.join(tail)}"
        # An empty machine-id stays: each run writes its own into the overlay (a root's nspawn
        # >= 257 cannot boot containers without one).
        run(["tar", "--zstd", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf",
             str(tarball), "-C", str(root), "."])
        (entry / "tarball-complete").touch()
        (entry / "packages").write_text("\n".join(packages) + "\n")
        done.touch()
        log(f"{stack.name}: built in {time.monotonic() - started:.0f} s")
        prune(stack, keep=entry)
        return root, ""


def older_root(stack: Stack, key: str) -> Path | None:
    """A complete root of an earlier week with the same packages and mirror, for offline runs."""
    digest = key.rsplit("-", 1)[1]
    entries = sorted(cache_dir().glob(f"{stack.suite}-*-{digest}"), reverse=True)
    return next((e / "root" for e in entries if (e / "complete").exists()), None)


def prune(stack: Stack, keep: Path) -> None:
    """Older roots of the same suite (last week's, another package list) go."""
    for entry in cache_dir().glob(f"{stack.suite}-*"):
        if entry != keep and entry.is_dir():
            log(f"{stack.name}: removing old root {entry}")
            shutil.rmtree(entry, ignore_errors=True)


# --- running the suite inside a root ------------------------------------------------------


def git_dirs() -> list[Path]:
    """Directories git needs besides the checkout (a worktree's .git file points elsewhere)."""
    result = run(["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                 check=False, capture_output=True)
    common = Path(result.stdout.strip()) if result.returncode == 0 else None
    if common is None or common.is_relative_to(REPO):
        return []
    return [common]


def enter(args: argparse.Namespace) -> None:
    """Runs as `unshare --mount --propagation private ... enter`: set up the root and exec.

    Every mount is made in this private namespace and disappears with its last process."""
    work, lower = Path(args.work), Path(args.lower)
    merged = work / "merged"
    for name in ("upper", "work", "merged"):
        (work / name).mkdir()
    run(["mount", "-t", "overlay", f"stack-{args.stack}", "-o",
         f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'work'}", str(merged)])
    run(["mount", "-t", "proc", "proc", str(merged / "proc")])
    run(["mount", "--rbind", "/sys", str(merged / "sys")])
    run(["mount", "--rbind", "/dev", str(merged / "dev")])
    run(["mount", "-t", "tmpfs", "-o", "mode=0755", "run", str(merged / "run")])
    run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmp", str(merged / "tmp")])
    if args.unified_cgroup:
        run(["umount", "-R", str(merged / "sys/fs/cgroup")])
        run(["mount", "-t", "cgroup2", "cgroup2", str(merged / "sys/fs/cgroup")])
    for path, writable in [(REPO, True), *((Path(p), False) for p in args.bind)]:
        target = merged / str(path).lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", "--bind", str(path), str(target)])
        if not writable:  # a worktree's git directory: read, never written from a stack
            run(["mount", "-o", "remount,bind,ro", str(target)])
    (merged / "etc/machine-id").write_text(hashlib.md5(os.urandom(16)).hexdigest() + "\n")
    (work / "mntns").write_text(os.readlink("/proc/self/ns/mnt"))
    os.chdir(merged)
    os.mkdir(".oldroot")
    run(["pivot_root", ".", ".oldroot"])
    os.chdir("/")
    run(["umount", "-l", "/.oldroot"])
    os.rmdir("/.oldroot")
    os.chdir(REPO)
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": os.environ.get("TERM", "dumb")}
    if args.unified_cgroup:
        env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
    if "COLUMNS" in os.environ:
        env["COLUMNS"] = os.environ["COLUMNS"]
    os.execve(args.command[0], args.command, env)


def processes_in(mntns: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "mnt") == mntns:
                    pids.append(int(entry.name))
    return pids


def kill_leftovers(work: Path) -> None:
    """No PID namespace: whatever the suite left running in its mount namespace dies here."""
    try:
        mntns = (work / "mntns").read_text()
    except FileNotFoundError:
        return
    deadline = time.monotonic() + KILL_WAIT
    while (pids := processes_in(mntns)) and time.monotonic() < deadline:
        log(f"killing {len(pids)} leftover process(es) of the run: {pids}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def remove_abandoned_runs(runs: Path) -> None:
    """Upper layers of runs that were killed before they could clean up (their namespace is
    gone with its last process; a run still being set up has no mntns file yet, so wait)."""
    for work in runs.iterdir():
        mntns = work / "mntns"
        if mntns.exists() and not processes_in(mntns.read_text()):
            log(f"removing the upper layer of an abandoned run: {work}")
            shutil.rmtree(work, ignore_errors=True)
        elif not mntns.exists() and time.time() - work.stat().st_mtime > 3600:
            shutil.rmtree(work, ignore_errors=True)


def tee(argv: list[str], timeout: float, work: Path | None = None) -> tuple[int, list[str]]:
    """Run argv, copying its output to ours line by line; return its status and lines.

    Done when argv exits (or after `timeout`), not when its output closes: a process it left
    behind may hold the pipe. Those in the run's mount namespace (`work`) are killed then."""
    lines: list[str] = []

    def copy(stream) -> None:
        for line in stream:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rstrip("\n"))

    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", start_new_session=True) as process:
        reader = threading.Thread(target=copy, args=(process.stdout,), daemon=True)
        reader.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            lines.append(f"stacks: timed out after {timeout:.0f} s")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            if work is not None:
                kill_leftovers(work)
        reader.join(timeout=KILL_WAIT)
    return process.returncode, lines


def summarize(stack: str, status: int, lines: list[str], seconds: float) -> Outcome:
    summary = next((m.group(1) for line in reversed(lines) if (m := SUMMARY_LINE.match(line))), None)
    differential = next((line for line in lines if DIFFERENTIAL_LINE.match(line)), "")
    if summary is None:
        summary = f"no pytest summary, exit status {status}: " + (lines[-1] if lines else "no output")
    return Outcome(stack, "passed" if status == 0 else "failed", summary, seconds, differential)


def pytest_argv(extra: list[str]) -> list[str]:
    return ["/usr/bin/python3", "-m", "pytest", "-ra", *extra, *([] if has_paths(extra) else ["tests"])]


def has_paths(extra: list[str]) -> bool:
    return any(arg.startswith("tests") for arg in extra)


def run_host(extra: list[str]) -> Outcome:
    log(f"host: {HOST.stands_for}")
    started = time.monotonic()
    status, lines = tee(pytest_argv(extra), STACK_TIMEOUT)
    return summarize("host", status, lines, time.monotonic() - started)


def run_stack(stack: Stack, extra: list[str]) -> Outcome:
    log(f"{stack.name}: {stack.stands_for}")
    started = time.monotonic()
    try:
        lower, why = ensure_root(stack)
    except (OSError, subprocess.CalledProcessError) as exc:
        lower, why = None, f"could not build or extract the root: {exc}"
    if lower is None:
        return Outcome(stack.name, "skipped", why)
    built = time.monotonic()
    runs = cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    remove_abandoned_runs(runs)
    work = Path(tempfile.mkdtemp(prefix=f"{stack.name}-", dir=runs))
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "/usr/bin/python3", str(Path(__file__).resolve()), "enter",
            "--stack", stack.name, "--lower", str(lower), "--work", str(work),
            *(["--unified-cgroup"] if stack.unified_cgroup else []),
            *(arg for path in git_dirs() for arg in ("--bind", str(path))),
            "--", *pytest_argv(extra)]
    try:
        status, lines = tee(argv, STACK_TIMEOUT, work)
    finally:
        kill_leftovers(work)
        shutil.rmtree(work, ignore_errors=True)
    outcome = summarize(stack.name, status, lines, time.monotonic() - built)
    outcome.root_seconds = built - started
    return outcome


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """`--stack NAME` (repeatable, also `--stack=NAME`) for us; everything else, and everything
    after `--`, for pytest (so `./scripts/test -k differential` works as it always did)."""
    stacks: list[str] = []
    extra: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            extra += rest
            break
        if arg == "--stack" or arg.startswith("--stack="):
            name = arg.split("=", 1)[1] if "=" in arg else (rest.pop(0) if rest else "")
            if name not in (*ALL, "all"):
                raise ValueError(f"unknown stack {name!r}")
            stacks.append(name)
        else:
            extra.append(arg)
    return stacks, extra


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb")
    enter_parser = sub.add_parser("enter", help=argparse.SUPPRESS)
    enter_parser.add_argument("--stack", required=True)
    enter_parser.add_argument("--lower", required=True)
    enter_parser.add_argument("--work", required=True)
    enter_parser.add_argument("--unified-cgroup", action="store_true")
    enter_parser.add_argument("--bind", action="append", default=[])
    enter_parser.add_argument("command", nargs="+")
    if argv[:1] == ["enter"]:
        enter(parser.parse_args(argv))
        return 127  # not reached: enter() execs
    try:
        stacks, extra = split_arguments(argv)
    except ValueError as exc:
        print(f"stacks: {exc}\nusage: scripts/stacks.py [--stack {'|'.join(ALL)}|all]... [--] [PYTEST-ARGS...]",
              file=sys.stderr)
        return 2
    chosen = ALL if not stacks or "all" in stacks else tuple(s for s in ALL if s in stacks)
    if os.geteuid() != 0:
        print("stacks: needs root (mounts, unshare, mmdebstrap)", file=sys.stderr)
        return 2

    outcomes = [run_host(extra) if name == "host" else run_stack(STACKS[name], extra) for name in chosen]
    print()
    for outcome in outcomes:
        if outcome.status == "skipped":
            print(f"stack {outcome.stack} skipped: {outcome.line}")
        else:
            root = "" if outcome.root_seconds is None else f"root ready in {outcome.root_seconds:.0f} s, "
            print(f"stack {outcome.stack} {outcome.status}: {outcome.line} ({root}{outcome.seconds:.0f} s wall)")
        if outcome.differential:
            print(f"  {outcome.differential}")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
