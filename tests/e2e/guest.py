"""The real dnf inside a booted container: installroot ``/``, a live systemd, the plugin from
the source tree.

``GuestDnf`` wraps a :class:`~tests.e2e.container.BootedContainer` that binds the checkout
read-only at ``/srv/src`` and a directory of fixture repositories at ``/srv/repo`` (one
subdirectory per repository, see :func:`publish_repos`).  dnf runs as the guest's
``/usr/bin/dnf`` with a private HOME (Debian's rpm needs ``%_dbpath /var/lib/rpm``), only the
bound repositories, and either the plugin from ``/srv/src`` or ``--noplugins``.

The guest's rpm database starts empty: :meth:`GuestDnf.setup` installs ``fixture-shell``
(``Provides: /bin/sh``; the guest has a real one) and ``fixture-presets``, without the plugin.
``fixture-root`` is never installed into the guest's ``/`` (it would replace the guest's own
``/bin`` and libraries); it is for scratch installroots only.

``GuestDnf.dnf(plugin_conf=TEXT)`` runs the plugin with a private configuration file holding
TEXT (e.g. ``guard = no``).  A test builds packages the catalog does not model with
:func:`build_rpms` and publishes them next to a pool's with ``publish_repos(extra=...)``.
:func:`transact` runs one measured transaction (:class:`Run`: the fixture log lines it caused,
the units before and after, the plugin's systemctl calls) for the restart, guard and marker
scenarios.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.container import BootedContainer, nspawn_unavailable_reason
from tests.e2e.fixtures import EVENTS_LOG, CommandFailed, FixturePackage, Pool, link_or_copy, run, spec_text
from tests.e2e.fixtures import RPMMACROS as BUILD_RPMMACROS

SRC = "/srv/src"
REPO_DIR = "/srv/repo"
PLUGIN_CONF_NAME = "libvirt-units.conf"
PLUGIN_CONF_DIRS = "/var/lib/e2e-dnf/pluginconf"  # one subdirectory per config text
# The runtime drop-in the plugin writes while rpm runs (libvirt_presets.guards)
GUARD_GLOB = "/run/systemd/system/*.d/50-libvirt-units-guard.conf"
HOME = "/var/lib/e2e-dnf/home"
REPOSDIR = "/var/lib/e2e-dnf/repos.d"  # stays empty: only --repofrompath repositories
DNF_CONF = "/var/lib/e2e-dnf/dnf.conf"
SYSTEMCTL = "/usr/bin/systemctl"
WRAPPER = "/usr/local/sbin/systemctl"
WRAPPER_LOG = "/var/log/systemctl-calls.log"
JOURNAL_IDENTIFIER = "libvirt-units"

# Host units that slow the guest's boot down and play no part in these tests.
HOST_UNITS_TO_MASK = ("postgresql.service", "postgresql@15-main.service")

RPMMACROS = "%_dbpath /var/lib/rpm\n"
DNF_CONF_TEXT = "[main]\ngpgcheck=0\ninstall_weak_deps=0\nmetadata_expire=0\nkeepcache=0\n"

# First on PATH, so the plugin (which runs `systemctl` from dnf's PATH) goes through it; rpm
# runs scriptlets with its own PATH (/sbin:/bin:/usr/sbin:/usr/bin), which bypasses it.  One
# line per call: the arguments, tab-separated.
WRAPPER_TEXT = f"""#!/bin/sh
(IFS="$(printf '\\t')"; printf '%s\\n' "$*") >> {WRAPPER_LOG}
exec {SYSTEMCTL} "$@"
"""


def publish_repos(pool: Pool, dest: Path, repos: Mapping[str, Sequence[str]],
                  extra: Mapping[str, Sequence[Path]] | None = None) -> Path:
    """Publish one fixture repository per name under dest (e.g. {"v900": ["9.0.0"]}); bind
    dest at REPO_DIR and pass the name to ``GuestDnf.dnf(repo=...)``.  ``extra`` adds RPM files
    built by a test (see :func:`build_rpms`) to the named repositories."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, versions in repos.items():
        repo = pool.make_repo(dest / name, versions)
        rpms = list((extra or {}).get(name, ()))
        for path in rpms:
            link_or_copy(path, repo / path.name)
        if rpms:
            run(["createrepo_c", "--quiet", "--no-database", str(repo)])
    return dest


def build_rpms(workdir: Path, specs: Mapping[str, str]) -> dict[str, Path]:
    """Build a test's own packages: ``rpmbuild -bb`` of each spec text (all in parallel), with
    the fixture pools' macros.  Returns every built RPM as ``NAME-VERSION`` -> file.

    Spec texts usually start from :func:`tests.e2e.fixtures.spec_text` and append sections
    (file triggers, scriptlets) the catalog does not model.
    """
    home, topdir = workdir / "home", workdir / "rpmbuild"
    for sub in ("SPECS", "SOURCES", "BUILD", "BUILDROOT", "RPMS/noarch", "SRPMS"):
        (topdir / sub).mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    (home / ".rpmmacros").write_text(BUILD_RPMMACROS.format(topdir=topdir))
    env = {**os.environ, "HOME": str(home), "LC_ALL": "C.UTF-8"}
    procs = []
    for name, text in specs.items():
        spec = topdir / "SPECS" / f"{name}.spec"
        spec.write_text(text)
        argv = ["rpmbuild", "-bb", "--quiet", str(spec)]
        procs.append((argv, subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)))
    for argv, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise CommandFailed(f"{' '.join(argv)} exited {proc.returncode}\n{stdout}\n{stderr}")
    built = {}
    for path in sorted((topdir / "RPMS" / "noarch").glob("*.rpm")):
        name_version = path.name.removesuffix(".noarch.rpm").rsplit("-", 1)[0]
        built[name_version] = path
    return built


UNIT_DIRS = "/usr/lib/systemd/system /etc/systemd/system"


def trigger(kind: str, package: str, priority: int, body: str) -> str:
    """A transaction file trigger on the system unit directories that logs itself, then runs body."""
    return f"\n%{kind} -n {package} -P {priority} -- {UNIT_DIRS}\n" \
           f'echo "trigger {package} {kind} -P {priority}" >> {EVENTS_LOG}\n{body}\n'


# What libvirt-units.spec ships (doc/markers.md), with the checkout on PYTHONPATH.
OUR_TRIGGER = f"PYTHONPATH={SRC} /usr/bin/python3 -m libvirt_presets.markers || :"


TRIGGERS = "libvirt-units-triggers"  # what a host gets from the libvirt-units RPM beside its plugin


def our_triggers_rpm(workdir: Path) -> Path:
    """The triggers package built once into `workdir`: hosts set up as a real install is add it
    to their repositories (publish_repos(extra=...)) and install TRIGGERS."""
    return build_rpms(workdir, {TRIGGERS: our_triggers_spec()})[f"{TRIGGERS}-1"]


def our_triggers_spec() -> str:
    """The libvirt-units RPM's marker triggers alone (its plugin comes from the checkout)."""
    pkg = FixturePackage("libvirt-units-triggers", "1", log_posttrans=False)
    return (spec_text([pkg], "bare")
            + trigger("transfiletriggerin", pkg.name, 900910, OUR_TRIGGER)
            + trigger("transfiletriggerpostun", pkg.name, 10010, OUR_TRIGGER))



def booted_guest(src: Path, repos: Path, writable: Mapping[Path, str] | None = None) -> BootedContainer:
    """A container (not yet entered) with the checkout and the repositories bound in."""
    return BootedContainer(binds={src: SRC, repos: REPO_DIR}, writable_binds=writable,
                           mask=HOST_UNITS_TO_MASK)


@dataclass(frozen=True)
class UnitShow:
    """What the manager says about a unit (enablement: ask GuestDnf.is_enabled, since the
    manager's UnitFileState is stale until its next daemon-reload)."""

    active_state: str
    sub_state: str
    main_pid: int
    invocation_id: str


class GuestDnf:
    """dnf, systemctl and the fixture logs of one booted guest."""

    def __init__(self, container: BootedContainer) -> None:
        self.c = container

    # -- set-up ----------------------------------------------------------------------------

    def setup(self, repo: str) -> None:
        """Private dnf HOME and config, then the infrastructure packages (no plugin)."""
        self.c.write_file(f"{HOME}/.rpmmacros", RPMMACROS)
        self.c.write_file(DNF_CONF, DNF_CONF_TEXT)
        self.c.run(["mkdir", "-p", REPOSDIR])
        self.dnf("install", "fixture-shell", "fixture-presets", repo=repo, plugin=False)

    def install_systemctl_wrapper(self) -> None:
        self.c.write_file(WRAPPER, WRAPPER_TEXT, mode=0o755)
        self.c.write_file(WRAPPER_LOG, "")

    # -- dnf -------------------------------------------------------------------------------

    def dnf(self, *args: str, repo: str, plugin: bool = True, installroot: str = "/",
            check: bool = True, env: Mapping[str, str] | None = None,
            plugin_conf: str | None = None, wrap: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """Run the guest's real dnf with REPO_DIR/repo as the only repository (under `wrap`,
        e.g. ``["chroot", "/mnt/x"]``, when given).

        plugin=True loads dnf-plugins/ and etc/dnf/plugins/ from the bound checkout (and
        imports libvirt_presets from it), or, given plugin_conf, a private libvirt-units.conf
        holding that text; plugin=False is the control run (--noplugins).
        """
        argv = [
            "/usr/bin/dnf", "-y", f"--installroot={installroot}", f"--config={DNF_CONF}",
            "--releasever=1", f"--setopt=reposdir={REPOSDIR}",
            f"--repofrompath={repo},{REPO_DIR}/{repo}", f"--repo={repo}", "--nogpgcheck",
            "--setopt=install_weak_deps=0", "--refresh",
        ]
        if plugin:
            argv += [f"--setopt=pluginpath={SRC}/dnf-plugins",
                     f"--setopt=pluginconfpath={self.plugin_conf_dir(plugin_conf)}"]
        else:
            argv.append("--noplugins")
        argv = [*wrap, *argv, *args]
        result = self.c.run(argv, check=False, env={"HOME": HOME, "PYTHONPATH": SRC, **(env or {})})
        print(f"[guest] $ {shlex.join(argv)}  [rc={result.returncode}]")
        print(result.stdout + (f"[stderr]\n{result.stderr}" if result.stderr else ""))
        if check and result.returncode != 0:
            raise AssertionError(f"dnf {' '.join(args)} exited {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def plugin_conf_dir(self, text: str | None) -> str:
        """The pluginconfpath for a configuration text (None: the checkout's own file)."""
        if text is None:
            return f"{SRC}/etc/dnf/plugins"
        directory = f"{PLUGIN_CONF_DIRS}/{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        self.c.write_file(f"{directory}/{PLUGIN_CONF_NAME}", text)
        return directory

    def packages(self, installroot: str = "/") -> dict[str, str]:
        out = self.c.run(["rpm", f"--root={installroot}", "-qa", "--qf", "%{NAME} %{VERSION}\\n"],
                         env={"HOME": HOME}).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    # -- systemd ---------------------------------------------------------------------------

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The test's own systemctl calls: the real binary, never the counting wrapper."""
        return self.c.run([SYSTEMCTL, *args], check=check)

    def start(self, *units: str) -> None:
        self.systemctl("start", "--", *units)

    def show(self, *units: str) -> dict[str, UnitShow]:
        props = "ActiveState,SubState,MainPID,InvocationID"
        out = self.systemctl("show", "-p", props, "--", *units).stdout
        blocks = out.strip().split("\n\n")
        shown = {}
        for unit, block in zip(units, blocks):
            p = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            shown[unit] = UnitShow(p["ActiveState"], p["SubState"], int(p["MainPID"]),
                                   p["InvocationID"])
        return shown

    def is_enabled(self, unit: str) -> str:
        """The word `systemctl is-enabled` prints (read from the unit files, not the manager)."""
        return self.systemctl("is-enabled", "--", unit, check=False).stdout.strip()

    def guards(self) -> list[str]:
        """Units that have the plugin's runtime guard drop-in right now."""
        out = self.c.run(["sh", "-c", f"ls -1d {GUARD_GLOB} 2>/dev/null || :"]).stdout
        return sorted(line.split("/")[-2].removesuffix(".d") for line in out.splitlines() if line)

    def journal(self) -> list[dict[str, str]]:
        """The plugin's structured journal entries (journalctl -o json)."""
        self.c.run(["journalctl", "--sync"], check=False)
        out = self.c.run(["journalctl", "--no-pager", "-o", "json",
                          f"SYSLOG_IDENTIFIER={JOURNAL_IDENTIFIER}"], check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    # -- logs ------------------------------------------------------------------------------

    def events(self, installroot: str = "/") -> list[str]:
        """Lines of the fixture start/reload/posttrans log."""
        path = installroot.rstrip("/") + EVENTS_LOG
        result = self.c.run(["cat", "--", path], check=False)
        return result.stdout.splitlines() if result.returncode == 0 else []

    def wrapper_calls(self) -> list[list[str]]:
        """argv (without the program) of every systemctl run through the wrapper."""
        text = self.c.run(["cat", "--", WRAPPER_LOG]).stdout
        return [line.split("\t") for line in text.splitlines()]

    def clear_wrapper_log(self) -> None:
        self.c.write_file(WRAPPER_LOG, "")


def starts(events: Iterable[str], name: str) -> list[int]:
    """PIDs of the "start NAME PID" lines (a oneshot logs "start NAME" alone: PID 0)."""
    found = []
    for line in events:
        words = line.split()
        if len(words) >= 2 and words[0] == "start" and words[1] == name:
            found.append(int(words[2]) if len(words) > 2 else 0)
    return found


def reloads(events: Iterable[str], name: str) -> int:
    return sum(1 for line in events if line.split() == ["reload", name])


def wait_for_start_lines(guest: GuestDnf, units: Iterable[str], timeout: float = 5.0) -> None:
    """Wait until the start log has caught up with the manager: every running unit's MainPID
    has its "start NAME PID" line (a Type=simple unit is "active" before its shell wrote it)."""
    units = [u for u in units if u.endswith(".service")]
    deadline = time.monotonic() + timeout
    while True:
        shown = guest.show(*units) if units else {}
        events = guest.events()
        missing = [u for u, s in shown.items()
                   if s.active_state == "active" and s.main_pid
                   and s.main_pid not in starts(events, u.removesuffix(".service"))]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no start line for the MainPID of {missing} after {timeout} s")
        time.sleep(0.02)


def wait_for_no_guard(guest: GuestDnf, units: Sequence[str], timeout: float = 15.0) -> None:
    """The watcher reacts to dnf's death on its own time: until no guard file is left and the
    manager enforces none."""
    deadline = time.monotonic() + timeout
    while True:
        shown = guest.systemctl("show", "-p", "RefuseManualStop", "--", *units).stdout.split()
        if guest.guards() == [] and shown == ["RefuseManualStop=no"] * len(units):
            return
        assert time.monotonic() < deadline, (guest.guards(), shown)
        time.sleep(0.2)


# -- measured transactions (the restart, guard and marker scenarios) ------------------------


@dataclass
class Run:
    """What one measured transaction did."""

    output: str
    events: list[str]  # log lines appended during the transaction (and its aftermath)
    before: dict[str, UnitShow]
    after: dict[str, UnitShow]
    calls: list[list[str]]  # systemctl argv (without the program) seen by the wrapper
    returncode: int = 0  # dnf's

    def starts(self, unit: str) -> int:
        return len(starts(self.events, unit.removesuffix(".service")))

    def reloads(self, unit: str) -> int:
        return reloads(self.events, unit.removesuffix(".service"))

    def calls_naming(self, unit: str, verbs: Sequence[str]) -> list[list[str]]:
        return [c for c in self.calls if unit in c and any(v in c for v in verbs)]

    def last_posttrans(self) -> int:
        """Index in events of the last %posttrans line: every package is in place after it."""
        return max(i for i, line in enumerate(self.events) if line.startswith("posttrans "))

    def index(self, line: str) -> int:
        """Index in events of the one line `line` (it must occur exactly once)."""
        found = [i for i, event in enumerate(self.events) if event == line]
        assert len(found) == 1, (line, self.events)
        return found[0]


def transact(guest: GuestDnf, *args: str, plugin: bool, watch: Sequence[str],
             repo: str = "v910", plugin_conf: str | None = None, check: bool = True,
             env: Mapping[str, str] | None = None, wrap: Sequence[str] = ()) -> Run:
    """Run one dnf transaction and collect the start/reload lines it caused."""
    wait_for_start_lines(guest, watch)
    before = guest.show(*watch)
    mark = len(guest.events())
    guest.clear_wrapper_log()
    result = guest.dnf(*args, repo=repo, plugin=plugin, plugin_conf=plugin_conf, check=check, env=env,
                       wrap=wrap)
    if check:
        wait_for_start_lines(guest, watch)
    return Run(result.stdout + result.stderr, guest.events()[mark:], before, guest.show(*watch),
               guest.wrapper_calls(), result.returncode)


def guarded_units(output: str) -> set[str]:
    """The units the plugin said it guards while rpm runs ("libvirt-units: guarding A B against
    stops and restarts ..."), from dnf's output."""
    found: set[str] = set()
    for line in output.splitlines():
        if "libvirt-units: guarding " in line:
            found |= set(line.split("libvirt-units: guarding ", 1)[1].split(" against ")[0].split())
    return found


def counts_line(name: str, run: Run, units: Sequence[str], sink: list[str]) -> str:
    """One "COUNTS name: unit start=N reload=N, ...; plugin systemctl calls=N" line, printed
    and appended to sink (see write_counts_summary)."""
    parts = [f"{u.removesuffix('.service')} start={run.starts(u)} reload={run.reloads(u)}"
             for u in units]
    line = f"COUNTS {name}: " + ", ".join(parts) + f"; plugin systemctl calls={len(run.calls)}"
    print(line)
    sink.append(line)
    return line


def write_counts_summary(request, title: str, lines: Sequence[str]) -> None:
    """From a module-scoped fixture, after its tests: the COUNTS lines on the terminal."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_sep("-", title)
        for line in sorted(lines):
            reporter.write_line(line)


def assert_journal_fields(guest: GuestDnf, expected: Mapping[str, str]) -> list[dict[str, str]]:
    """Every plugin journal entry about an action names UNIT, ACTION and TRIGGER_PACKAGE;
    `expected` maps unit -> the ACTION that must be among them."""
    entries = [e for e in guest.journal() if "ACTION" in e]
    for entry in entries:
        assert entry.get("UNIT") and entry.get("TRIGGER_PACKAGE"), entry
    seen = {(e["UNIT"], e["ACTION"]) for e in entries}
    for unit, action in expected.items():
        assert (unit, action) in seen, (unit, action, sorted(seen))
    return entries


def skip_without_nspawn(what: str) -> None:
    """Skip the calling module's tests, saying why, when no container can boot here."""
    reason = nspawn_unavailable_reason()
    if reason is not None:
        message = f"cannot boot a systemd-nspawn container, {what} skipped: {reason}"
        print(message)
        pytest.skip(message)


def container_module(what: str, title: str, count_lines: list[str]):  # a pytest fixture
    """The autouse module fixture of a container test module: skip it (saying why) where no
    container can boot; afterwards print every scenario's COUNTS line under `title`."""

    @pytest.fixture(scope="module", autouse=True)
    def _container_module(request: pytest.FixtureRequest):
        skip_without_nspawn(what)
        yield
        write_counts_summary(request, title, count_lines)

    return _container_module
