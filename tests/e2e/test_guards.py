"""Issue 8 end to end: no restart inside the transaction.

While rpm runs, the plugin guards every running managed service the transaction will restart or
reload with a runtime drop-in (/run/systemd/system/UNIT.d/50-libvirt-units-guard.conf,
``RefuseManualStop=yes``): the classic ``%postun`` try-restarts are refused (exit 4), reloads
still work.  After rpm the guards go first, then one batch restarts (or reloads) each service
once, after the last package is in place.

Real dnf in a booted container (tests/e2e/guest.py), classic fixture pool: every %posttrans
appends "posttrans NAME-VERSION" and every service start "start NAME PID" to the same log, so
"after the last package" is an order in one file.  Every test prints one ``COUNTS`` line.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fixtures import EVENTS_LOG, KILL_MARKER, FixturePackage, Pool, spec_text
from tests.e2e.guest import (
    HOME,
    TRIGGERS,
    GuestDnf,
    Run,
    assert_journal_fields,
    booted_guest,
    build_rpms,
    container_module,
    counts_line,
    guarded_units,
    our_triggers_spec,
    publish_repos,
    transact,
    wait_for_no_guard,
    wait_for_start_lines,
)
from tests.e2e.harness import REPO_ROOT

RESTARTED = ("libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service", "virtqemud.service")
RELOADED = ("virtlogd.service", "virtlockd.service")
SERVICES = RESTARTED + RELOADED
PACKAGES = (  # the packages shipping SERVICES, plus the two config packages (restart triggers)
    "libvirt-daemon", "libvirt-daemon-driver-network", "libvirt-daemon-driver-nwfilter",
    "libvirt-daemon-driver-qemu", "libvirt-daemon-log", "libvirt-daemon-lock",
    "libvirt-daemon-config-network", "libvirt-daemon-config-nwfilter",
)
PACKAGE_OF = {
    "libvirtd.service": "libvirt-daemon", "virtnetworkd.service": "libvirt-daemon-driver-network",
    "virtnwfilterd.service": "libvirt-daemon-driver-nwfilter",
    "virtqemud.service": "libvirt-daemon-driver-qemu", "virtlogd.service": "libvirt-daemon-log",
    "virtlockd.service": "libvirt-daemon-lock",
}
COUNT_LINES: list[str] = []

# A package whose %post does, while the plugin's guards are in place, what scriptlets do: a
# try-restart of a guarded restart-policy service and a reload of a guarded reload-policy one.
# It logs the exit statuses (and the guard as the manager sees it) to the fixture log.
PROBE_POST = f"""\
echo "probe libvirtd $(systemctl show -p RefuseManualStop libvirtd.service)" >> {EVENTS_LOG}
rc=0; systemctl try-restart libvirtd.service >/dev/null 2>&1 || rc=$?
echo "probe try-restart libvirtd rc=$rc" >> {EVENTS_LOG}
rc=0; systemctl reload virtlogd.service >/dev/null 2>&1 || rc=$?
echo "probe reload virtlogd rc=$rc" >> {EVENTS_LOG}
"""


module_setup = container_module("guard tests", "issue 8: starts/reloads with the services guarded", COUNT_LINES)


@pytest.fixture(scope="module")
def repos(classic_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v900 (9.0.0) and v910 (9.0.0 + 9.1.0 + guard-probe), classic scriptlets, both with the
    rpm triggers the libvirt-units RPM ships beside its plugin (doc/markers.md)."""
    probe = FixturePackage("guard-probe", "1", log_posttrans=False)
    spec = spec_text([probe], "bare") + f"\n%post -n guard-probe\n{PROBE_POST}"
    built = build_rpms(tmp_path_factory.mktemp("guard-probe"), {"guard-probe": spec, TRIGGERS: our_triggers_spec()})
    ours = built[f"{TRIGGERS}-1"]
    return publish_repos(classic_pool, tmp_path_factory.mktemp("guard-repos"),
                         {"v900": ["9.0.0"], "v910": ["9.0.0", "9.1.0"]},
                         extra={"v900": [ours], "v910": [built["guard-probe-1"], ours]})


@contextlib.contextmanager
def booted_with(repos: Path, packages: tuple[str, ...], services: tuple[str, ...]) -> Iterator[GuestDnf]:
    """A guest with `packages` 9.0.0 installed (with the plugin) and `services` running."""
    with booted_guest(REPO_ROOT, repos) as container:
        guest = GuestDnf(container)
        guest.setup("v900")
        guest.dnf("install", TRIGGERS, *packages, repo="v900")
        guest.install_systemctl_wrapper()
        guest.start(*services)
        wait_for_start_lines(guest, services)
        yield guest


# G1 + G2: one guarded upgrade of every package ---------------------------------------------

@pytest.fixture(scope="module")
def guarded_upgrade(repos: Path) -> Iterator[tuple[GuestDnf, Run]]:
    with booted_with(repos, PACKAGES, SERVICES) as guest:
        run = transact(guest, "upgrade", *PACKAGES, plugin=True, watch=SERVICES)
        counts_line("G1+G2 classic plugin", run, SERVICES, COUNT_LINES)
        yield guest, run


def test_g1_each_daemon_starts_once_after_the_last_package(guarded_upgrade):
    guest, run = guarded_upgrade
    assert guest.packages()["libvirt-daemon"] == "9.1.0"
    assert set(SERVICES) <= guarded_units(run.output)
    # the transaction's packages, all in place before anything starts
    posttrans = {line for line in run.events if line.startswith("posttrans ")}
    assert posttrans == {f"posttrans {p}-9.1.0" for p in (*PACKAGES, "libvirt-daemon-proxy")}, run.events
    last = run.last_posttrans()
    for unit in RESTARTED:
        name = unit.removesuffix(".service")
        pid = run.after[unit].main_pid
        assert run.starts(unit) == 1, (unit, run.events)  # the classic %postun was refused
        assert run.index(f"start {name} {pid}") > last, (unit, run.events)
        assert pid != run.before[unit].main_pid and run.after[unit].active_state == "active"
    assert [c for c in run.calls if "restart" in c] == [["restart", "--", *sorted(RESTARTED)]]
    assert guest.guards() == []
    assert_journal_fields(guest, {**dict.fromkeys(RESTARTED, "restart"),
                                  **dict.fromkeys(SERVICES, "unguard")})
    assert "Traceback" not in run.output


def test_g2_log_and_lock_daemons_reloaded_once_never_restarted(guarded_upgrade):
    guest, run = guarded_upgrade
    for unit in RELOADED:
        name = unit.removesuffix(".service")
        assert (run.starts(unit), run.reloads(unit)) == (0, 1), (unit, run.events)
        assert run.index(f"reload {name}") > run.last_posttrans()
        assert run.after[unit].main_pid == run.before[unit].main_pid  # same process: fds kept
        assert run.after[unit].invocation_id == run.before[unit].invocation_id
    assert [c for c in run.calls if "reload-or-restart" in c] == [
        ["reload-or-restart", "--", *sorted(RELOADED)]]
    assert_journal_fields(guest, dict.fromkeys(RELOADED, "reload"))


# A scriptlet's view of the guard ---------------------------------------------------------------

def test_guarded_scriptlet_try_restart_refused_but_reload_works(repos):
    units = ("libvirtd.service", "virtlogd.service")
    with booted_with(repos, ("libvirt-daemon", "libvirt-daemon-log"), units) as guest:
        run = transact(guest, "install", "guard-probe", "libvirt-daemon-9.1.0",
                       "libvirt-daemon-log-9.1.0", plugin=True, watch=units)
        counts_line("probe classic plugin", run, units, COUNT_LINES)
        assert guest.packages()["guard-probe"] == "1"
        probe_reload = run.index("probe reload virtlogd rc=0")
        assert run.index("probe libvirtd RefuseManualStop=yes") < probe_reload
        assert run.index("probe try-restart libvirtd rc=4") < probe_reload  # "Operation refused"
        # the probe's reload succeeded but did nothing (the guard's no-op ExecReload=): the
        # plugin's reload after the transaction is the only one
        reload_lines = [i for i, line in enumerate(run.events) if line == "reload virtlogd"]
        assert len(reload_lines) == 1 and run.last_posttrans() < reload_lines[0]
        assert run.starts("virtlogd.service") == 0
        assert run.after["virtlogd.service"].main_pid == run.before["virtlogd.service"].main_pid
        # libvirtd: not by the scriptlet, once by the plugin after the transaction
        assert run.starts("libvirtd.service") == 1
        assert run.index(f"start libvirtd {run.after['libvirtd.service'].main_pid}") > run.last_posttrans()
        shown = guest.systemctl("show", "-p", "RefuseManualStop", "libvirtd.service").stdout.strip()
        assert shown == "RefuseManualStop=no" and guest.guards() == []


# G3: dnf killed in the middle of the transaction ------------------------------------------

def test_g3_killed_dnf_leaves_no_guard_and_resume_restarts_once(repos):
    with booted_with(repos, PACKAGES, SERVICES) as guest:
        # libvirt-daemon-driver-network's %post kills dnf: rpm has installed some of the new
        # packages, none of the old ones is erased yet, and the plugin's after-rpm step never ran.
        guest.c.write_file(KILL_MARKER, "libvirt-daemon-driver-network")
        killed = transact(guest, "upgrade", *PACKAGES, plugin=True, watch=SERVICES, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.output
        assert guest.c.run(["pgrep", "-x", "dnf"], check=False).returncode == 1  # dnf is gone

        # dnf is dead: its watcher took every guard down (files and manager: an admin's restart
        # works again), and nothing was restarted; the restarts wait for resume.
        wait_for_no_guard(guest, SERVICES)
        assert set(SERVICES) <= guarded_units(killed.output)  # they were guarded while rpm ran
        assert not any(line.startswith("start ") for line in killed.events), killed.events
        assert guest.show(*SERVICES) == killed.before  # same processes, same invocations

        resumed = transact(guest, "libvirt-units", "resume", plugin=True, watch=SERVICES)
        counts_line("G3 classic plugin (killed, then resume)", resumed, SERVICES, COUNT_LINES)
        assert "completing the unfinished transaction" in resumed.output
        assert guest.guards() == []
        assert guest.c.run(["sh", "-c", "ls /run/systemd/system/*.d/*libvirt-units* 2>/dev/null"],
                           check=False).stdout == ""
        # "in the middle": some of the new packages are in, not all, and no old one was erased
        nvs = guest.c.run(["rpm", "-qa", "--qf", "%{NAME} %{VERSION}\\n"], env={"HOME": HOME}).stdout
        installed = {line.split()[0] for line in nvs.splitlines() if line.endswith(" 9.1.0")}
        assert set(PACKAGE_OF.values()) <= installed < {*PACKAGES, "libvirt-daemon-proxy"}, installed
        old = guest.c.run(["rpm", "-q", *(f"{p}-9.0.0" for p in PACKAGES)], env={"HOME": HOME})
        assert old.returncode == 0, old.stdout
        for unit in RESTARTED:  # once each, by the resumed plugin; never during the transaction
            assert (killed.starts(unit), resumed.starts(unit), resumed.reloads(unit)) == (0, 1, 0), unit
            assert resumed.after[unit].main_pid != killed.before[unit].main_pid
        for unit in RELOADED:
            assert (killed.reloads(unit), resumed.starts(unit), resumed.reloads(unit)) == (0, 0, 1), unit
            assert resumed.after[unit].main_pid == killed.before[unit].main_pid
        shown = guest.systemctl("show", "-p", "RefuseManualStop", "--", *SERVICES).stdout.split()
        assert shown == ["RefuseManualStop=no"] * len(SERVICES)
        assert_journal_fields(guest, {**dict.fromkeys(RESTARTED, "restart"), **dict.fromkeys(RELOADED, "reload")})


def test_resume_after_a_kill_between_unguard_and_reload_drops_the_guard(repos):
    """The guard files are gone but the manager enforces them until its next daemon-reload: a run
    killed right there must leave neither the manager enforcing them (the watcher reloads it) nor
    the resumed batch refused.  This transaction needs no daemon-reload of its own (only
    libvirt-daemon-config-network changes: a restart trigger)."""
    units = ("libvirtd.service", "virtnetworkd.service")
    packages = ("libvirt-daemon", "libvirt-daemon-driver-network", "libvirt-daemon-config-network")
    with booted_with(repos, packages, units) as guest:
        killed = transact(guest, "upgrade", "libvirt-daemon-config-network", plugin=True, watch=units,
                          check=False, env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:finish"})
        assert killed.returncode == -signal.SIGKILL, killed.output
        # the files were removed (the journal says so), and dnf's death made its watcher reload
        # the manager: it enforces no guard any more, before any resume
        wait_for_no_guard(guest, units)

        resumed = transact(guest, "libvirt-units", "resume", plugin=True, watch=units)
        counts_line("unguard-kill classic plugin (killed after unguard, then resume)", resumed, units,
                    COUNT_LINES)
        assert resumed.calls == [["daemon-reload"], ["restart", "--", *units]], resumed.calls
        assert {u: resumed.starts(u) for u in units} == dict.fromkeys(units, 1), resumed.events
        assert "failed" not in resumed.output, resumed.output
        shown = guest.systemctl("show", "-p", "RefuseManualStop", "--", *units).stdout.split()
        assert shown == ["RefuseManualStop=no"] * 2
