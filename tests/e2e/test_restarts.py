"""Issue 3 end to end: batched restarts and reloads against a real systemd manager.

Each scenario boots a throw-away systemd in an nspawn container (tests/e2e/container.py), runs
the guest's real dnf there with installroot ``/`` and the plugin from the bound checkout
(tests/e2e/guest.py), and counts what happened to the fixture services from their own log:
every start appends "start NAME PID", every reload "reload NAME".

The transaction runs with the plugin and, as the control, with ``--noplugins``, in the two
fixture pools: ``classic`` (Fedora's stock scriptlets, %postun try-restarts each package's own
services) and ``bare`` (no unit scriptlets at all).  Every test prints one ``COUNTS`` line.

Since issue 8 the plugin guards the running services it will restart or reload while rpm runs
(a runtime ``RefuseManualStop=yes`` drop-in): the classic scriptlets' try-restarts are refused
and the plugin's batch does the one restart after the transaction.  ``guard = no`` brings back
issue 3's behaviour (the scriptlets restart, the plugin sees it and does not restart again);
R1 runs that way too.

systemctl calls of the plugin are counted with a wrapper first on dnf's PATH
(/usr/local/sbin/systemctl); rpm runs scriptlets with its own PATH, so they bypass it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.e2e.fixtures import Pool
from tests.e2e.guest import (
    TRIGGERS,
    GuestDnf,
    assert_journal_fields,
    booted_guest,
    container_module,
    counts_line,
    our_triggers_rpm,
    publish_repos,
    transact,
    wait_for_start_lines,
)
from tests.e2e.harness import REPO_ROOT

R1_PACKAGES = (
    "libvirt-daemon", "libvirt-daemon-config-network", "libvirt-daemon-config-nwfilter",
    "libvirt-daemon-driver-qemu", "libvirt-daemon-driver-network", "libvirt-daemon-driver-nwfilter",
)
R1_SERVICES = ("libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service",
               "virtqemud.service")
RELOADED = ("virtlogd.service", "virtlockd.service")
LIVE_VERBS = ("daemon-reload", "show", "try-restart", "try-reload-or-restart", "start", "restart",
              "stop", "reload")
STYLES = ("classic", "bare")
COUNT_LINES: list[str] = []
NO_GUARD_CONF = "[main]\nguard = no\n"


module_setup = container_module("restart tests", "issues 3 and 8: starts/reloads after the transaction began",
                                COUNT_LINES)


@pytest.fixture(scope="module")
def repos(classic_pool: Pool, bare_pool: Pool,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per style, a directory with the repositories v900 (9.0.0) and v910 (9.0.0 + 9.1.0), both
    with the rpm triggers the libvirt-units RPM ships beside its plugin (doc/markers.md)."""
    extra = dict.fromkeys(("v900", "v910"), (our_triggers_rpm(tmp_path_factory.mktemp("restart-rpms")),))
    return {
        pool.style: publish_repos(pool, tmp_path_factory.mktemp(f"guest-repos-{pool.style}"),
                                  {"v900": ["9.0.0"], "v910": ["9.0.0", "9.1.0"]}, extra=extra)
        for pool in (classic_pool, bare_pool)
    }


@contextlib.contextmanager
def guest_with(repos: Mapping[str, Path], style: str, packages: Sequence[str],
               plugin: bool, plugin_conf: str | None = None) -> Iterator[GuestDnf]:
    """A booted guest with `packages` 9.0.0 installed (with the plugin or not) and the
    systemctl wrapper in place."""
    with booted_guest(REPO_ROOT, repos[style]) as container:
        guest = GuestDnf(container)
        guest.setup("v900")
        guest.dnf("install", TRIGGERS, *packages, repo="v900", plugin=plugin, plugin_conf=plugin_conf)
        guest.install_systemctl_wrapper()
        yield guest


# R1 + R6 --------------------------------------------------------------------------------

MODES = {  # id -> (plugin, plugin configuration text; None: the checkout's own file)
    "stock": (False, None),
    "plugin": (True, None),
    "plugin-noguard": (True, NO_GUARD_CONF),
}


@pytest.mark.parametrize("style,mode", [
    ("classic", "stock"), ("classic", "plugin"), ("classic", "plugin-noguard"),
    ("bare", "stock"), ("bare", "plugin"),
])
def test_r1_split_daemons_restarted_exactly_once(repos, style, mode):
    plugin, conf = MODES[mode]
    with guest_with(repos, style, R1_PACKAGES, plugin, conf) as guest:
        guest.start(*R1_SERVICES)
        run = transact(guest, "upgrade", *R1_PACKAGES, plugin=plugin, watch=R1_SERVICES,
                       plugin_conf=conf)
        counts_line(f"R1 {style} {mode}", run, R1_SERVICES, COUNT_LINES)
        assert guest.packages()["libvirt-daemon"] == "9.1.0"
        assert all(s.active_state == "active" for s in run.after.values()), run.after

        if not plugin and style == "bare":  # nothing restarts: the daemons run stale code
            assert {u: run.starts(u) for u in R1_SERVICES} == dict.fromkeys(R1_SERVICES, 0)
            assert {u: run.after[u].main_pid for u in R1_SERVICES} == {
                u: run.before[u].main_pid for u in R1_SERVICES}
            return
        # Exactly once, whoever does it: each old package's %postun (classic stock, and
        # classic with guard = no), or the plugin's one batch (the guard refused the scriptlets).
        assert {u: run.starts(u) for u in R1_SERVICES} == dict.fromkeys(R1_SERVICES, 1), run.events
        assert all(run.after[u].main_pid != run.before[u].main_pid for u in R1_SERVICES)
        guarded = plugin and conf is None
        scriptlets_restart = style == "classic" and not guarded
        started = [i for i, line in enumerate(run.events) if line.startswith("start ")]
        if scriptlets_restart:  # in the middle of the transaction, before %posttrans
            assert max(started) < run.last_posttrans(), run.events
        else:  # after every package is in place
            assert min(started) > run.last_posttrans(), run.events
        if not plugin:
            return

        assert guest.guards() == []  # no guard outlives the transaction
        assert not any(arg.startswith("--root") for c in run.calls for arg in c), run.calls
        restarts = [c for c in run.calls if "restart" in c]
        # On a live host the preset call reloads the manager itself (no --no-reload): that one
        # reload loads the new units, the restored links and drops the guards.
        preset = ["preset", "--", "virtqemud-admin.socket", "virtqemud-tcp.socket"]
        if scriptlets_restart:  # guard = no: the scriptlets restarted everything, the plugin adds none
            assert run.calls == [preset], run.calls
            assert restarts == []
            expected = dict.fromkeys(R1_SERVICES, "skip")
        else:
            # R6: the plugin's whole live work is three systemctl processes: one daemon-reload
            # to place the guards, the preset of the new units (which reloads the manager after
            # rpm: drops the guards, loads the new units), one restart batch.
            assert run.calls == [["daemon-reload"], preset,
                                 ["restart", "--", *sorted(R1_SERVICES)]], run.calls
            expected = dict.fromkeys(R1_SERVICES, "restart")
        assert len(run.calls) <= 4, run.calls
        entries = assert_journal_fields(guest, expected)
        unguarded = {e["UNIT"] for e in entries if e["ACTION"] == "unguard"}
        # the daemons and the sockets that start them (a refused stop must not strand them)
        assert (set(R1_SERVICES) <= unguarded) if guarded else (unguarded == set()), entries
        assert "Traceback" not in run.output


# R2 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
@pytest.mark.parametrize("style", STYLES)
def test_r2_log_and_lock_daemons_reloaded_not_restarted(repos, style, plugin):
    packages = ("libvirt-daemon-log", "libvirt-daemon-lock")
    with guest_with(repos, style, packages, plugin) as guest:
        guest.start(*RELOADED)
        run = transact(guest, "upgrade", *packages, plugin=plugin, watch=RELOADED)
        counts_line(f"R2 {style} {'plugin' if plugin else 'stock'}", run, RELOADED, COUNT_LINES)
        assert all(s.active_state == "active" for s in run.after.values()), run.after
        pids = {u: (run.before[u].main_pid, run.after[u].main_pid) for u in RELOADED}
        got = {u: (run.starts(u), run.reloads(u)) for u in RELOADED}

        if style == "classic" and not plugin:
            # The stock %postun try-restarts them during the transaction: a restart, where
            # virtlogd/virtlockd must only be reloaded (they would lose their open files).
            assert got == dict.fromkeys(RELOADED, (1, 0)), run.events
            return
        if not plugin:  # bare stock: nothing happens, the daemons run stale code
            assert got == dict.fromkeys(RELOADED, (0, 0)), run.events
            assert all(a == b for a, b in pids.values()), pids
            return
        # With the plugin, classic or bare: the guard refused the scriptlets' try-restarts;
        # one reload each after the transaction, by the plugin's one batch.
        assert got == dict.fromkeys(RELOADED, (0, 1)), run.events
        assert all(a == b for a, b in pids.values()), pids  # same process: fds kept
        assert run.calls == [["daemon-reload"], ["daemon-reload"],
                             ["reload-or-restart", "--", *sorted(RELOADED)]], run.calls
        assert guest.guards() == []
        assert_journal_fields(guest, dict.fromkeys(RELOADED, "reload"))


# R3 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
@pytest.mark.parametrize("style", STYLES)
def test_r3_stopped_stays_stopped_and_guests_never_restarted(repos, style, plugin):
    packages = ("libvirt-daemon-driver-network", "libvirt-daemon-driver-nwfilter", "libvirt-client")
    stopped = ("virtnetworkd.service", "virtnwfilterd.service")
    units = (*stopped, "libvirt-guests.service")
    with guest_with(repos, style, packages, plugin) as guest:
        # virtnetworkd never ran; virtnwfilterd ran, is enabled (stays loaded) and was stopped
        guest.systemctl("enable", "virtnwfilterd.service")
        guest.start("virtnwfilterd.service", "libvirt-guests.service")
        guest.systemctl("stop", "virtnwfilterd.service")
        run = transact(guest, "upgrade", *packages, plugin=plugin, watch=units)
        counts_line(f"R3 {style} {'plugin' if plugin else 'stock'}", run, units, COUNT_LINES)
        assert guest.packages()["libvirt-client"] == "9.1.0"
        for unit in stopped:
            assert run.after[unit].active_state in ("inactive", "failed"), run.after
            assert run.starts(unit) == 0, run.events
        assert run.after["libvirt-guests.service"].active_state == "active"
        # libvirt-guests (oneshot, policy never): the classic %postun try-restart of
        # libvirt-client re-runs it in the control run; the plugin guards it (the scriptlet's
        # restart is refused) and never restarts it itself.
        assert run.starts("libvirt-guests.service") == (1 if style == "classic" and not plugin else 0), \
            run.events
        for unit in units:
            assert run.calls_naming(unit, ("restart", "reload-or-restart", "start")) == []


# R4 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_r4_renamed_package_keeps_service_running_and_enabled(repos, plugin):
    unit = "virtsecretd.service"
    with guest_with(repos, "classic", ("libvirt-daemon-driver-secret",), plugin) as guest:
        guest.systemctl("enable", unit)
        guest.start(unit)
        assert guest.is_enabled(unit) == "enabled"
        # driver-secret 9.0.0 -> libvirt-daemon-secret 9.1.0 (Obsoletes): the old name's
        # %preun runs `systemctl --no-reload disable --now` on its units.
        run = transact(guest, "upgrade", plugin=plugin, watch=(unit,))
        counts_line(f"R4 classic {'plugin' if plugin else 'stock'}", run, (unit,), COUNT_LINES)
        packages = guest.packages()
        assert "libvirt-daemon-secret" in packages and "libvirt-daemon-driver-secret" not in packages
        state = (run.after[unit].active_state, guest.is_enabled(unit))
        if not plugin:  # the control run loses it: stopped and disabled
            assert state == ("inactive", "disabled")
            assert run.starts(unit) == 0
            return
        # The old name's `disable --now` disabled it (the plugin put the links back) but its
        # stop was refused by the guard: the daemon kept running through the transaction and
        # the plugin restarted it once at the end (before issue 8 it was stopped, then started).
        assert state == ("active", "enabled"), run.output
        assert run.starts(unit) == 1, run.events
        assert run.calls == [["daemon-reload"], ["daemon-reload"], ["restart", "--", unit]], run.calls
        assert guest.guards() == []
        assert_journal_fields(guest, {unit: "restart"})


# R5 -------------------------------------------------------------------------------------

SCRATCH = "/var/tmp/scratch-root"


def manager_counters(guest: GuestDnf) -> dict[str, str]:
    """Jobs ever queued by the live manager, and when it last (re)loaded its units."""
    out = guest.systemctl("show", "-p", "NInstalledJobs,UnitsLoadStartTimestampMonotonic").stdout
    counters = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert set(counters) == {"NInstalledJobs", "UnitsLoadStartTimestampMonotonic"}, out
    return counters


def test_r5_installroot_transaction_never_touches_the_live_manager(repos):
    live = ("libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service", *RELOADED)
    packages = (*R1_PACKAGES, "libvirt-daemon-log", "libvirt-daemon-lock")
    with guest_with(repos, "classic", packages, True) as guest:
        guest.start(*live)
        wait_for_start_lines(guest, live)
        before, mark = guest.show(*live), len(guest.events())
        manager_before = manager_counters(guest)
        guest.clear_wrapper_log()

        guest.dnf("install", "fixture-root", "fixture-presets", repo="v900", plugin=False,
                  installroot=SCRATCH)
        guest.dnf("install", *packages, repo="v900", installroot=SCRATCH)
        upgrade = guest.dnf("upgrade", *packages, repo="v910", installroot=SCRATCH)

        assert guest.packages(SCRATCH)["libvirt-daemon"] == "9.1.0"
        assert guest.packages()["libvirt-daemon"] == "9.0.0"
        calls = guest.wrapper_calls()
        line = (f"COUNTS R5 classic plugin: live start/reload lines={len(guest.events()[mark:])}; "
                f"plugin systemctl calls={len(calls)}, all with --root: "
                f"{all(c[:1] == [f'--root={SCRATCH}'] for c in calls)}")
        print(line)
        COUNT_LINES.append(line)
        assert calls, "the plugin ran no systemctl at all: is the wrapper on PATH?"
        assert all(c[0] == f"--root={SCRATCH}" for c in calls), calls
        assert not any(v in c for c in calls for v in LIVE_VERBS), calls
        # The manager's own counters: no job of any kind (start, stop, restart, reload) was
        # queued and no daemon-reload ran, whoever might have asked (plugin or scriptlet).
        assert manager_counters(guest) == manager_before
        after = guest.show(*live)
        assert {u: (s.invocation_id, s.main_pid) for u, s in after.items()} == {
            u: (s.invocation_id, s.main_pid) for u, s in before.items()}
        assert guest.events()[mark:] == []  # no start, no reload in the live system
        assert "posttrans libvirt-daemon-9.1.0" in guest.events(SCRATCH)
        assert "Traceback" not in upgrade.stdout + upgrade.stderr
        # The installroot was handled as what it is, not as the booted host around it: no guard
        # (none in its /run either), nothing planned live, and the transaction's record is there.
        assert "without per-unit handling" not in upgrade.stdout + upgrade.stderr
        record = json.loads(guest.c.read_file(f"{SCRATCH}/var/lib/dnf/libvirt-units/last-transaction.json"))
        assert record["guards"] == [] and record["outcome"]["restarted"] == record["outcome"]["reloaded"] == []
        assert not any(a in ("guard", "restart", "reload", "start") for u in record["units"] for a in u["actions"])
        assert guest.c.run(["sh", "-c", f"ls {SCRATCH}/run/systemd/system/*.d/50-libvirt-units-guard.conf"],
                           check=False).returncode != 0


# A failing unit -----------------------------------------------------------------------

def test_failing_unit_does_not_stop_the_others(repos):
    services = ("libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service")
    with guest_with(repos, "bare", R1_PACKAGES, True) as guest:
        guest.start(*services)
        # virtnetworkd can stop but not start again; the plugin's daemon-reload picks this up
        guest.c.write_file("/etc/systemd/system/virtnetworkd.service.d/broken.conf",
                           "[Service]\nExecStartPre=/bin/false\n")
        run = transact(guest, "upgrade", *R1_PACKAGES, plugin=True, watch=services)
        counts_line("failing-unit bare plugin", run, services, COUNT_LINES)
        # one batch; it fails; the manager says which units it did; only the broken one is
        # retried (`restart` starts it again: the batch stopped it)
        assert [c for c in run.calls if "restart" in c] == [["restart", "--", *services],
                                                            ["restart", "--", "virtnetworkd.service"]]
        assert {u: run.starts(u) for u in services} == {
            "libvirtd.service": 1, "virtnetworkd.service": 0, "virtnwfilterd.service": 1}, run.events
        assert run.after["libvirtd.service"].active_state == "active"
        assert run.after["virtnwfilterd.service"].active_state == "active"
        warnings = [line for line in run.output.splitlines()
                    if "libvirt-units:" in line and "failed" in line]
        assert len(warnings) == 1 and "virtnetworkd.service" in warnings[0], run.output
        failed = [e for e in guest.journal() if e.get("PRIORITY") == "4"]
        assert [(e.get("UNIT"), e.get("ACTION")) for e in failed] == [
            ("virtnetworkd.service", "restart")], failed
        assert failed[0].get("TRIGGER_PACKAGE", "").startswith("libvirt-daemon-driver-network-9.1.0")
