"""Issue 8 item 3 end to end: marker-based restarts (Fedora's systemd >= 248 macros).

Modern ``%systemd_postun_with_restart`` does not restart from ``%postun``: it marks the unit
(``systemd-update-helper mark-restart-system-units`` = ``systemctl set-property UNIT
Markers=+needs-restart``), and systemd's own package restarts every marked unit from its
transaction file triggers (``systemctl reload-or-restart --marked``).  The plugin's
RefuseManualStop guard does not stop those jobs (systemd < 255), so virtlogd and virtlockd, which
must only be reloaded, are restarted — unless libvirt-units' own file triggers, which run before
systemd's, take the marks off (libvirt_presets/markers.py, doc/markers.md).

The pieces are modelled with RPMs built here, after systemd v252's src/rpm:

- ``systemd-triggers``: systemd.spec's system-unit file triggers (%transfiletriggerin -P 900900
  system-reload-restart, %transfiletriggerpostun -P 1000100 system-reload and -P 10000
  system-restart) and a ``systemd-update-helper`` with the verbs they and the macros use;
- ``libvirt-units-triggers``: the triggers libvirt-units.spec ships (doc/markers.md), running
  ``python3 -m libvirt_presets.markers`` from the bound checkout;
- ``libvirt-daemon-log``/``-lock`` 9.0.0 and 9.1.0 with the modern macros' scriptlets.

Each trigger and helper call appends a line to the fixture log, next to the services' start
and reload lines, so the order of events is visible in one file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.fixtures import EVENTS_LOG, FixturePackage, Pool, catalog, spec_text
from tests.e2e.guest import (
    GuestDnf,
    booted_guest,
    build_rpms,
    container_module,
    counts_line,
    guarded_units,
    our_triggers_spec,
    publish_repos,
    transact,
    trigger,
    wait_for_start_lines,
)
from tests.e2e.harness import REPO_ROOT

HELPER = "/usr/lib/systemd/systemd-update-helper"
SERVICES = ("virtlogd.service", "virtlockd.service")
PACKAGES = ("libvirt-daemon-log", "libvirt-daemon-lock")
COUNT_LINES: list[str] = []

# A model of systemd v252's src/rpm/systemd-update-helper.in: the verbs the macros and the file
# triggers below use, each call logged.
HELPER_TEXT = f"""\
#!/bin/bash
set -eu
command="${{1:?}}"
shift
echo "helper $command $*" >> {EVENTS_LOG}
case "$command" in
    install-system-units)
        systemctl --no-reload preset "$@" ;;
    remove-system-units)
        if [ -d /run/systemd/system ]; then systemctl --no-reload disable --now "$@"
        else systemctl --no-reload disable "$@"; fi ;;
    mark-restart-system-units)
        [ -d /run/systemd/system ] || exit 0
        for unit in "$@"; do systemctl set-property "$unit" Markers=+needs-restart & done
        wait ;;
    system-reload-restart|system-reload|system-restart)
        [ -d /run/systemd/system ] || exit 0
        case "$command" in *reload*) systemctl daemon-reload ;; esac
        case "$command" in *restart) systemctl reload-or-restart --marked ;; esac ;;
    *)
        echo "Unknown verb '$command'"; exit 3 ;;
esac
"""


def systemd_triggers_spec() -> str:
    """systemd.spec's system-unit triggers (v252 src/rpm/triggers.systemd.in), as shell."""
    pkg = FixturePackage("systemd-triggers", "1", files=((HELPER, HELPER_TEXT, 0o755),),
                         log_posttrans=False)
    return (spec_text([pkg], "bare")
            + trigger("transfiletriggerin", pkg.name, 900900, f"{HELPER} system-reload-restart || :")
            + trigger("transfiletriggerpostun", pkg.name, 1000100, f"{HELPER} system-reload || :")
            + trigger("transfiletriggerpostun", pkg.name, 10000, f"{HELPER} system-restart || :"))


def daemons_spec(version: str) -> str:
    """libvirt-daemon-log and -lock with the modern macros: %systemd_preun and
    %systemd_postun_with_restart through the helper (the fixture %post only logs)."""
    pkgs = [p for p in catalog(version) if p.name in PACKAGES]
    text = spec_text(pkgs, "bare")
    for pkg in pkgs:
        units = " ".join(pkg.units)
        text += (f"\n%preun -n {pkg.name}\nif [ $1 -eq 0 ] && [ -x {HELPER} ]; then "
                 f"{HELPER} remove-system-units {units} || :; fi\n"
                 f"\n%postun -n {pkg.name}\nif [ $1 -ge 1 ] && [ -x {HELPER} ]; then "
                 f"{HELPER} mark-restart-system-units {' '.join(pkg.services)} || :; fi\n")
    return text


def systemd_version(guest: GuestDnf) -> int:
    """The major version of the guest's systemd (`systemctl --version`: "systemd 252 (...)")."""
    return int(guest.systemctl("--version").stdout.split()[1])


module_setup = container_module("marker tests", "issue 8: restart markers (systemd >= 248 macros)", COUNT_LINES)


@pytest.fixture(scope="module")
def repos(classic_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_rpms(tmp_path_factory.mktemp("marker-rpms"), {
        "systemd-triggers": systemd_triggers_spec(),
        "libvirt-units-triggers": our_triggers_spec(),
        "daemons-9.0.0": daemons_spec("9.0.0"),
        "daemons-9.1.0": daemons_spec("9.1.0"),
    })
    base = [built["systemd-triggers-1"], built["libvirt-units-triggers-1"],
            *(built[f"{p}-9.0.0"] for p in PACKAGES)]
    return publish_repos(classic_pool, tmp_path_factory.mktemp("marker-repos"),
                         {"v900": [], "v910": []},
                         extra={"v900": base, "v910": [*base, *(built[f"{p}-9.1.0"] for p in PACKAGES)]})


SCENARIOS = {  # id -> (our triggers installed, dnf plugin loaded)
    "plugin-without-our-trigger": (False, True),
    "plugin-with-our-trigger": (True, True),
    "noplugins-with-our-trigger": (True, False),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_marked_log_and_lock_daemons(repos, scenario):
    ours, plugin = SCENARIOS[scenario]
    with booted_guest(REPO_ROOT, repos) as container:
        guest = GuestDnf(container)
        guest.setup("v900")
        infra = ["systemd-triggers", *(["libvirt-units-triggers"] if ours else [])]
        guest.dnf("install", *infra, *PACKAGES, repo="v900", plugin=False)
        guest.install_systemctl_wrapper()
        guest.start(*SERVICES)
        wait_for_start_lines(guest, SERVICES)

        run = transact(guest, "upgrade", *PACKAGES, plugin=plugin, watch=SERVICES)
        counts_line(f"markers {scenario}", run, SERVICES, COUNT_LINES)
        assert guest.packages()["libvirt-daemon-log"] == "9.1.0"
        events = run.events
        # the old packages' %postun marked both; systemd's triggers ran after every package
        marked = run.index("helper mark-restart-system-units virtlogd.service")
        assert run.index("helper mark-restart-system-units virtlockd.service") < run.last_posttrans()
        assert marked < run.last_posttrans() < run.index("helper system-reload-restart ")
        shown = guest.systemctl("show", "-p", "Markers", "--", *SERVICES).stdout.split()
        assert shown == ["Markers="] * len(SERVICES)  # nothing left marked for a later --marked
        assert guest.guards() == []
        if plugin:
            assert set(SERVICES) <= guarded_units(run.output)

        if not ours and systemd_version(guest) < 255:
            # systemd's --marked restarts them, guard or not (systemd < 255); the plugin sees the
            # new processes and adds nothing
            for unit in SERVICES:
                assert (run.starts(unit), run.reloads(unit)) == (1, 0), (unit, events)
                assert run.after[unit].main_pid != run.before[unit].main_pid
            assert not any("reload-or-restart" in c for c in run.calls), run.calls
            return
        if not ours:
            # systemd >= 255 refuses --marked for the guarded units and keeps the marks; the
            # plugin reloads each once, then takes the marks off (checked above: none left)
            for unit in SERVICES:
                assert (run.starts(unit), run.reloads(unit)) == (0, 1), (unit, events)
                assert run.after[unit].main_pid == run.before[unit].main_pid
            assert [c for c in run.calls if "set-property" in c] == [
                ["set-property", "--", unit, "Markers=-needs-restart -needs-reload"] for unit in sorted(SERVICES)]
            return

        ours_first = run.index("trigger libvirt-units-triggers transfiletriggerin -P 900910")
        assert run.last_posttrans() < ours_first < run.index("trigger systemd-triggers transfiletriggerin -P 900900")
        for unit in SERVICES:
            name = unit.removesuffix(".service")
            assert (run.starts(unit), run.reloads(unit)) == (0, 1), (unit, events)
            assert run.after[unit].main_pid == run.before[unit].main_pid  # same process: fds kept
            assert run.after[unit].invocation_id == run.before[unit].invocation_id
            reloaded = run.index(f"reload {name}")
            if plugin:  # unmarked by our trigger; the plugin's batch reloads after every trigger
                assert reloaded > max(i for i, line in enumerate(events)
                                      if line.startswith(("trigger ", "helper ")))
            else:  # reloaded by our trigger itself, before systemd's trigger
                assert ours_first < reloaded < run.index("helper system-reload-restart ")
        entries = [e for e in guest.journal() if e.get("ACTION") == "unmark"]
        assert sorted(e["UNIT"] for e in entries) == sorted(SERVICES), entries
        assert {e["UNIT"]: e.get("TRIGGER_PACKAGE") for e in entries} == {
            "virtlogd.service": "libvirt-daemon-log-9.1.0-1.noarch",
            "virtlockd.service": "libvirt-daemon-lock-9.1.0-1.noarch"}, entries
        if plugin:
            assert run.calls == [["daemon-reload"], ["daemon-reload"],
                                 ["reload-or-restart", "--", *sorted(SERVICES)]], run.calls
        else:
            assert run.calls == []  # --noplugins: the plugin is not there at all
