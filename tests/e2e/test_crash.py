"""Issue 5 end to end: dnf killed at every checkpoint; the next dnf run finishes our work.

Each test kills the real dnf (SIGKILL, as the OOM killer or a power cut would) during the seed's
split upgrade on a monolithic host, then runs another dnf command and checks that the admin's
enablement is back and every new unit got its preset, with the journal gone.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.e2e.fixtures import KILL_MARKER, PROXY_SOCKETS
from tests.e2e.harness import InstallRoot, monolithic_host

JOURNAL = "var/lib/dnf/libvirt-units/pending.json"
RECORD = "var/lib/dnf/libvirt-units/last-transaction.json"


def killed(result) -> bool:
    return result.returncode == -signal.SIGKILL


def assert_seed_outcome_kept(root: InstallRoot) -> None:
    assert root.is_enabled("libvirtd.socket") == "enabled"
    for unit in ("virtproxyd.service", *PROXY_SOCKETS):
        assert root.is_enabled(unit) == "disabled", unit
    assert root.is_enabled("virtqemud-admin.socket") == "enabled"  # new unit: preset applied
    assert not (root.path / JOURNAL).exists()


def next_dnf_run(root: InstallRoot, repo) -> str:
    """Any later dnf command (here a read-only one) completes the journal."""
    return root.dnf("list", "installed", repo=repo).output


@pytest.mark.parametrize("step", ["finish", "mid-actions"])
def test_killed_after_rpm_is_completed_by_the_next_dnf_run(root, repos, step):
    monolithic_host(root, repos.v900, plugin=True)
    result = root.dnf("upgrade", repo=repos.v910, check=False,
                      env={"LIBVIRT_UNITS_TEST_CHECKPOINT": f"kill:{step}"})
    assert killed(result), result.output
    assert root.packages()["libvirt-daemon-proxy"] == "9.1.0"  # rpm committed
    assert (root.path / JOURNAL).exists()
    if step == "finish":  # nothing of ours ran: the scriptlets' damage is visible
        assert root.is_enabled("virtproxyd.socket") == "enabled"
    output = next_dnf_run(root, repos.v910)
    assert "completing the unfinished transaction" in output
    assert_seed_outcome_kept(root)
    record = json.loads((root.path / RECORD).read_text())
    # presets are marked done in the journal: a resumed run does not repeat them
    assert ("virtqemud-admin.socket" in record["outcome"]["preset"]) == (step == "finish")


def test_killed_during_the_rpm_transaction(root, repos):
    monolithic_host(root, repos.v900, plugin=True)
    (root.path / KILL_MARKER.lstrip("/")).write_text("libvirt-daemon-proxy")
    result = root.dnf("upgrade", repo=repos.v910, check=False)
    assert killed(result), result.output
    assert (root.path / JOURNAL).exists()
    next_dnf_run(root, repos.v910)
    assert not (root.path / JOURNAL).exists()
    for unit in ("virtproxyd.service", *PROXY_SOCKETS):  # whatever rpm got done, nothing re-enabled
        assert root.is_enabled(unit) == "disabled", unit
    assert root.is_enabled("libvirtd.socket") == "enabled"
    root.dnf("upgrade", repo=repos.v910, check=False)  # the admin finishes the upgrade
    assert_seed_outcome_kept(root)


def test_journal_of_a_transaction_that_never_reached_rpm_is_discarded(root, repos):
    monolithic_host(root, repos.v900, plugin=True)
    before = root.links()
    result = root.dnf("upgrade", repo=repos.v910, check=False,
                      env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:after-snapshot"})
    assert killed(result)
    assert root.packages()["libvirt-daemon"] == "9.0.0" and (root.path / JOURNAL).exists()
    output = next_dnf_run(root, repos.v910)
    assert "never reached rpm" in output
    assert not (root.path / JOURNAL).exists() and root.links() == before


def test_resume_by_hand(root, repos):
    monolithic_host(root, repos.v900, plugin=True)
    root.dnf("upgrade", repo=repos.v910, check=False, env={"LIBVIRT_UNITS_TEST_CHECKPOINT": "kill:finish"})
    out = root.dnf("libvirt-units", "resume", repo=repos.v910).output
    assert "completing the unfinished transaction" in out
    assert_seed_outcome_kept(root)
    again = root.dnf("libvirt-units", "resume", repo=repos.v910).output
    assert "no unfinished transaction" in again


@pytest.mark.parametrize("content", ["{not json", '{"version": 99}', '{"version": 1, "links_before": 3}'])
def test_corrupt_or_unknown_journal_is_moved_aside(root, repos, content):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=True)
    state = root.path / JOURNAL
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(content)
    before = root.links()
    result = root.dnf("list", "installed", repo=repos.v900)
    warnings = [x for x in result.output.splitlines() if "libvirt-units:" in x]
    assert len(warnings) == 1 and "), moved to pending.json.corrupt-" in warnings[0]
    assert not state.exists() and list(state.parent.glob("pending.json.corrupt-*"))
    assert root.links() == before


def test_symlinked_journal_is_refused(root, repos, tmp_path):
    root.dnf("install", "libvirt", repo=repos.v900, plugin=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state_dir = root.path / os.path.dirname(JOURNAL)
    for child in state_dir.iterdir():
        child.unlink()
    state_dir.rmdir()
    state_dir.symlink_to(elsewhere)
    result = root.dnf("upgrade", repo=repos.v910)
    assert "is a symlink; refusing" in result.output
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    assert root.packages()["libvirt-daemon"] == "9.1.0"  # and the transaction went on
