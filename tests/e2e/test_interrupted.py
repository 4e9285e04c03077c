"""Issue 15 item 2 end to end: a dnf killed after rpm committed blocks nothing, and what it left
undone waits for a transaction or `resume`, never for a timer's `dnf makecache`.

Real dnf in a booted systemd, classic fixture pool. dnf is killed (SIGKILL, as the OOM killer or
a lost SSH session would) at the start of the plugin's after-rpm step, with every guard still in
place. Then, without any help from libvirt-units: the admin's `systemctl restart libvirtd` works
(the guards' watcher took them down when dnf died); `status` and `check` name the unfinished
transaction and the command that completes it; `dnf makecache` completes the on-disk part only;
`dnf libvirt-units resume` restarts what is left, once.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.fixtures import Pool
from tests.e2e.guest import (
    TRIGGERS,
    GuestDnf,
    booted_guest,
    container_module,
    counts_line,
    guarded_units,
    our_triggers_rpm,
    publish_repos,
    transact,
    wait_for_no_guard,
)
from tests.e2e.harness import REPO_ROOT

COUNT_LINES: list[str] = []
module_setup = container_module("interrupted-transaction tests", "issue 15: a killed dnf", COUNT_LINES)

PACKAGES = ("libvirt-daemon", "libvirt-daemon-driver-network", "libvirt-daemon-log")
SERVICES = ("libvirtd.service", "virtnetworkd.service", "virtlogd.service")
PENDING = "/var/lib/dnf/libvirt-units/pending.json"
RESUME_HINT = "run 'dnf libvirt-units resume'"


@pytest.fixture(scope="module")
def repos(classic_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = dict.fromkeys(("v900", "v910"), (our_triggers_rpm(tmp_path_factory.mktemp("interrupted-rpms")),))
    return publish_repos(classic_pool, tmp_path_factory.mktemp("interrupted-repos"),
                         {"v900": ["9.0.0"], "v910": ["9.0.0", "9.1.0"]}, extra=extra)


def pending(guest: GuestDnf) -> bool:
    return guest.c.run(["test", "-e", PENDING], check=False).returncode == 0


def test_a_dnf_killed_after_rpm_blocks_nothing_and_leaves_restarts_to_resume(repos):
    with booted_guest(REPO_ROOT, repos) as container:
        guest = GuestDnf(container)
        guest.setup("v900")
        guest.dnf("install", TRIGGERS, *PACKAGES, repo="v900", plugin=False)
        guest.install_systemctl_wrapper()
        guest.start(*SERVICES)

        killed = transact(guest, "upgrade", *PACKAGES, plugin=True, watch=SERVICES, check=False,
                          env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:after-rpm"})
        assert killed.returncode == -signal.SIGKILL, killed.output
        assert guest.packages()["libvirt-daemon"] == "9.1.0"  # rpm committed
        assert set(SERVICES) <= guarded_units(killed.output)
        assert not any(line.startswith(("start ", "reload ")) for line in killed.events), killed.events

        wait_for_no_guard(guest, SERVICES)
        assert guest.systemctl("restart", "libvirtd.service", check=False).returncode == 0  # no help from us

        status = guest.dnf("libvirt-units", "status", repo="v910")
        assert PENDING in status.stdout and RESUME_HINT in status.stdout, status.stdout
        check = guest.dnf("libvirt-units", "check", repo="v910", check=False)
        assert check.returncode == 1 and RESUME_HINT in check.stdout, check.stdout

        # a timer's makecache: the on-disk part, no restart, no reload; the journal stays
        makecache = transact(guest, "makecache", plugin=True, watch=SERVICES)
        counts_line("killed after rpm, then makecache", makecache, SERVICES, COUNT_LINES)
        assert not any(line.startswith(("start ", "reload ")) for line in makecache.events), makecache.events
        assert not [c for c in makecache.calls if "restart" in c or "reload-or-restart" in c], makecache.calls
        assert pending(guest)

        resumed = transact(guest, "libvirt-units", "resume", plugin=True, watch=SERVICES)
        counts_line("killed after rpm, then resume", resumed, SERVICES, COUNT_LINES)
        # virtnetworkd once; libvirtd not again (the admin restarted it: a new invocation); virtlogd reloaded
        assert {u: resumed.starts(u) for u in SERVICES} == {
            "libvirtd.service": 0, "virtnetworkd.service": 1, "virtlogd.service": 0}, resumed.events
        assert resumed.reloads("virtlogd.service") == 1
        assert not pending(guest) and guest.guards() == []
