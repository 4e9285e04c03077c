"""Issue 19, item 4 (booted-host half): live behaviours no other test would notice breaking.

Real dnf (or rpm with `libvirt-units snapshot`/`apply`) in a booted container, installroot
``/``, the ``bare`` fixture pool (no unit scriptlets: every start or reload after rpm is the
plugin's). Each test was seen failing with the product broken on purpose; the mutation is named
in its docstring (tests/README.md, "Checking that a test can fail").
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.fixtures import FAIL_MARKER, Pool
from tests.e2e.guest import (
    HOME,
    REPO_DIR,
    SRC,
    GuestDnf,
    Run,
    booted_guest,
    container_module,
    counts_line,
    publish_repos,
    transact,
    wait_for_start_lines,
)
from tests.e2e.harness import REPO_ROOT

R1_PACKAGES = (
    "libvirt-daemon", "libvirt-daemon-config-network", "libvirt-daemon-config-nwfilter",
    "libvirt-daemon-driver-qemu", "libvirt-daemon-driver-network", "libvirt-daemon-driver-nwfilter",
)
R1_SERVICES = ("libvirtd.service", "virtnetworkd.service", "virtnwfilterd.service", "virtqemud.service")
JOURNAL = "/var/lib/dnf/libvirt-units/pending.json"
RECORD = "/var/lib/dnf/libvirt-units/last-transaction.json"
COUNT_LINES: list[str] = []

module_setup = container_module("blind-spot live tests", "issue 19: live blind spots", COUNT_LINES)


@pytest.fixture(scope="module")
def live_repos(bare_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v900, v910, and v910-nofl: v910 without any filelists metadata (primary only)."""
    dest = publish_repos(bare_pool, tmp_path_factory.mktemp("blind-live-repos"),
                         {"v900": ["9.0.0"], "v910": ["9.0.0", "9.1.0"]})
    bare_pool.make_repo(dest / "v910-nofl", ["9.0.0", "9.1.0"], strip_filelists=True)
    return dest


@contextlib.contextmanager
def guest_with(repos: Path, packages: Sequence[str], plugin: bool = True) -> Iterator[GuestDnf]:
    with booted_guest(REPO_ROOT, repos) as container:
        guest = GuestDnf(container)
        guest.setup("v900")
        guest.dnf("install", *packages, repo="v900", plugin=plugin)
        guest.install_systemctl_wrapper()
        yield guest


def transact_unchecked(guest: GuestDnf, *args: str, watch: Sequence[str], **kwargs) -> Run:
    """`transact` for a dnf that fails or is killed: waits for the start lines afterwards too."""
    wait_for_start_lines(guest, watch)
    mark = len(guest.events())
    run = transact(guest, *args, watch=watch, check=False, **kwargs)
    wait_for_start_lines(guest, watch)
    run.events, run.after = guest.events()[mark:], guest.show(*watch)
    return run


def exists(guest: GuestDnf, path: str) -> bool:
    return guest.c.run(["test", "-e", path], check=False).returncode == 0


def test_resume_after_a_kill_after_the_live_batches_restarts_nothing_again(live_repos):
    """dnf killed between the live batches and their mark in the journal (checkpoint
    "after-live"): the next run finishes the journal, and the restarted services, which have
    new invocation IDs, are not restarted again. Mutation seen failing: planner.plan_live
    without the `live.active_before[service] != st.invocation_id` branch."""
    restarted = ("libvirtd.service", "virtnetworkd.service")
    with guest_with(live_repos, ("libvirt-daemon", "libvirt-daemon-driver-network")) as guest:
        guest.start(*restarted)
        killed = transact_unchecked(guest, "upgrade", plugin=True, watch=restarted,
                                    env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:after-live"})
        assert killed.returncode == -signal.SIGKILL, killed.output
        assert guest.packages()["libvirt-daemon"] == "9.1.0"
        assert exists(guest, JOURNAL)
        assert {u: killed.starts(u) for u in restarted} == dict.fromkeys(restarted, 1), killed.events

        resumed = transact(guest, "libvirt-units", "resume", plugin=True, watch=restarted)
        counts_line("after-live kill, then resume (bare plugin)", resumed, restarted, COUNT_LINES)
        assert "completing the unfinished transaction" in resumed.output
        assert {u: resumed.starts(u) for u in restarted} == dict.fromkeys(restarted, 0), resumed.events
        assert [c for c in resumed.calls if "restart" in c] == [], resumed.calls
        assert {u: s.invocation_id for u, s in resumed.after.items()} == {
            u: s.invocation_id for u, s in killed.after.items()}
        assert not exists(guest, JOURNAL)


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_stripped_repository_metadata_still_restarts_each_daemon_once(live_repos, plugin):
    """The repository publishes no filelists (as dnf >= 4.19 loads none by default): the
    incoming file lists come from rpm, so the daemons whose packages changed are restarted once,
    after the last package. Control (bare): nothing restarts. Mutation seen failing:
    libvirt_units.transaction_changes taking `pkg.files` (metadata) instead of rpm's lists."""
    with guest_with(live_repos, R1_PACKAGES, plugin) as guest:
        guest.start(*R1_SERVICES)
        run = transact(guest, "upgrade", *R1_PACKAGES, repo="v910-nofl", plugin=plugin, watch=R1_SERVICES)
        counts_line(f"stripped metadata bare {'plugin' if plugin else 'stock'}", run, R1_SERVICES, COUNT_LINES)
        assert guest.packages()["libvirt-daemon-driver-qemu"] == "9.1.0"
        starts = {u: run.starts(u) for u in R1_SERVICES}
        if not plugin:
            assert starts == dict.fromkeys(R1_SERVICES, 0), run.events
            return
        assert starts == dict.fromkeys(R1_SERVICES, 1), run.events
        assert min(i for i, e in enumerate(run.events) if e.startswith("start ")) > run.last_posttrans()
        assert all(s.active_state == "active" for s in run.after.values()), run.after


def test_failed_element_is_not_restarted_on_a_live_host(live_repos):
    """libvirt-daemon-driver-qemu 9.1.0's %pre fails: rpm keeps 9.0.0, and virtqemud, whose
    package did not change, must not be restarted; the others are, once. Mutation seen failing:
    libvirt_units._finish counting every transaction item as done (its state ignored)."""
    with guest_with(live_repos, R1_PACKAGES) as guest:
        guest.start(*R1_SERVICES)
        guest.c.write_file(FAIL_MARKER, "libvirt-daemon-driver-qemu")
        run = transact_unchecked(guest, "upgrade", *R1_PACKAGES, repo="v910", plugin=True, watch=R1_SERVICES)
        counts_line("failed element bare plugin", run, R1_SERVICES, COUNT_LINES)
        assert run.returncode != 0  # dnf reports the failed element
        packages = guest.packages()
        assert packages["libvirt-daemon-driver-qemu"] == "9.0.0" and packages["libvirt-daemon"] == "9.1.0"
        assert {u: run.starts(u) for u in R1_SERVICES} == {
            "libvirtd.service": 1, "virtnetworkd.service": 1, "virtnwfilterd.service": 1,
            "virtqemud.service": 0}, run.events
        assert run.after["virtqemud.service"].invocation_id == run.before["virtqemud.service"].invocation_id
        assert not [c for c in run.calls if "virtqemud.service" in c and "restart" in c], run.calls
        assert "Traceback" not in run.output


@pytest.mark.parametrize("units", [False, True], ids=["stock", "cli"])
def test_apply_sees_a_reinstall(live_repos, units):
    """`libvirt-units snapshot; rpm -U --replacepkgs ...; libvirt-units apply` (same NEVRAs, new
    install transaction ID): apply must see the reinstall and restart libvirtd once and reload
    virtlogd once. Control: rpm alone (bare) restarts nothing. Mutation seen failing:
    session.finish_observed treating only new NEVRAs as arrived (the install TID ignored).

    rpm's install TID is the second its transaction began: a reinstall in the same second as
    the install keeps the TID and is invisible to `apply` (seen here without the `sleep 1`)."""
    packages = ("libvirt-daemon", "libvirt-daemon-log")
    watch = ("libvirtd.service", "virtlogd.service")
    files = [f"{REPO_DIR}/v900/{name}-9.0.0-1.noarch.rpm" for name in packages]
    script = ('sleep 1; python3 -m libvirt_presets snapshot && rpm -U --replacepkgs "$@"; rc=$?; '
              'python3 -m libvirt_presets apply && exit $rc') if units else 'sleep 1; rpm -U --replacepkgs "$@"'
    with guest_with(live_repos, packages, plugin=False) as guest:
        guest.start(*watch)
        wait_for_start_lines(guest, watch)
        before, mark = guest.show(*watch), len(guest.events())
        result = guest.c.run(["sh", "-c", script, "sh", *files], env={"HOME": HOME, "PYTHONPATH": SRC})
        assert result.returncode == 0, result.stderr
        wait_for_start_lines(guest, watch)
        run = Run(result.stderr, guest.events()[mark:], before, guest.show(*watch), [])
        counts_line(f"rpm --replacepkgs bare {'with snapshot/apply' if units else 'stock'}", run, watch,
                    COUNT_LINES)
        assert "posttrans libvirt-daemon-9.0.0" in run.events  # rpm really installed it again
        if not units:
            assert (run.starts("libvirtd.service"), run.reloads("virtlogd.service")) == (0, 0), run.events
            return
        assert (run.starts("libvirtd.service"), run.starts("virtlogd.service"),
                run.reloads("virtlogd.service")) == (1, 0, 1), run.events
        assert run.after["virtlogd.service"].main_pid == before["virtlogd.service"].main_pid
        record = json.loads(guest.c.read_file(RECORD))
        assert sorted(record["outcome"]["restarted"]) == ["libvirtd.service"], record["outcome"]
        assert "Traceback" not in result.stderr


def test_resume_after_a_kill_after_the_live_batches_reloads_nothing_again(live_repos):
    """The same kill as above, for virtlogd (policy reload): it was reloaded once by the killed
    run. A reload leaves no new invocation ID, so the journal marks the reload batch before it
    runs, and the resumed run does not reload it a second time (doc/live.md: exactly once).
    Mutation: skip the step("live-reload") mark in session.apply_live -> reloads == 2."""
    watch = ("virtlogd.service",)
    with guest_with(live_repos, ("libvirt-daemon-log",)) as guest:
        guest.start(*watch)
        killed = transact_unchecked(guest, "upgrade", plugin=True, watch=watch,
                                    env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:after-live"})
        assert killed.returncode == -signal.SIGKILL, killed.output
        assert killed.reloads("virtlogd.service") == 1, killed.events
        resumed = transact(guest, "libvirt-units", "resume", plugin=True, watch=watch)
        counts_line("after-live kill, then resume: virtlogd (bare plugin)", resumed, watch, COUNT_LINES)
        assert (resumed.starts("virtlogd.service"), resumed.reloads("virtlogd.service")) == (0, 0), resumed.events
